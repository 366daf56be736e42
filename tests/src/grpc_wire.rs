//! Hand-written wire format for the echo gRPC service: the 5-byte gRPC
//! message prefix and a protobuf message whose only field (1) is a string
//! (Istio echo's `EchoRequest`/`EchoResponse { string message = 1; }`).

use anyhow::{bail, Result};

/// Full path of the unary echo method.
pub const ECHO_METHOD_PATH: &str = "/proto.EchoTestService/Echo";

/// Encodes `text` as a protobuf message with field 1 = text, inside a gRPC frame.
pub fn encode_frame(text: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(text.len() + 8);
    if !text.is_empty() {
        msg.push(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut msg, text.len() as u64);
        msg.extend_from_slice(text.as_bytes());
    }
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(0); // not compressed
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

/// Decodes one gRPC frame holding the echo message; returns field 1 (empty if absent).
pub fn decode_frame(buf: &[u8]) -> Result<String> {
    if buf.len() < 5 {
        bail!("gRPC frame too short ({} bytes)", buf.len());
    }
    if buf[0] != 0 {
        bail!("compressed gRPC messages are not supported");
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    let Some(msg) = buf.get(5..5 + len) else {
        bail!("gRPC frame announces {len} bytes, has {}", buf.len() - 5);
    };
    decode_message(msg)
}

/// Decodes a protobuf message, returning field 1 as a string and skipping others.
pub fn decode_message(mut msg: &[u8]) -> Result<String> {
    let mut text = String::new();
    while !msg.is_empty() {
        let key = get_varint(&mut msg)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                get_varint(&mut msg)?;
            }
            1 => msg = msg.get(8..).ok_or_else(|| anyhow::anyhow!("truncated fixed64"))?,
            5 => msg = msg.get(4..).ok_or_else(|| anyhow::anyhow!("truncated fixed32"))?,
            2 => {
                let len = get_varint(&mut msg)? as usize;
                let Some(bytes) = msg.get(..len) else { bail!("truncated length-delimited field") };
                if field == 1 {
                    text = String::from_utf8_lossy(bytes).into_owned();
                }
                msg = &msg[len..];
            }
            other => bail!("unsupported protobuf wire type {other}"),
        }
    }
    Ok(text)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&b, rest)) = buf.split_first() else { bail!("truncated varint") };
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let long = "x".repeat(300);
        for t in ["", "hello", long.as_str()] {
            assert_eq!(decode_frame(&encode_frame(t)).unwrap(), t);
        }
        assert!(decode_frame(&[0, 0, 0, 0, 9, 1]).is_err());
        // field 2 varint then field 1 string
        assert_eq!(decode_message(&[0x10, 0x05, 0x0a, 0x02, b'h', b'i']).unwrap(), "hi");
    }
}
