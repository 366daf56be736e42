//! The body type used on both sides of the proxy.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, streaming body.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A body of `parts` as separate data frames, then `trailers` (tests of bodies that
/// are copied or replayed).
#[cfg(test)]
pub(crate) fn chunked(parts: &[&'static str], trailers: Option<http::HeaderMap>) -> Body {
    let mut frames: Vec<Result<http_body::Frame<bytes::Bytes>, BoxError>> =
        parts.iter().map(|p| Ok(http_body::Frame::data(bytes::Bytes::from_static(p.as_bytes())))).collect();
    if let Some(t) = trailers {
        frames.push(Ok(http_body::Frame::trailers(t)));
    }
    boxed(http_body_util::StreamBody::new(futures::stream::iter(frames)))
}
