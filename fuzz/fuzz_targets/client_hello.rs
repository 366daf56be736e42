//! The TLS ClientHello (SNI) parser: any bytes, never a panic; and once it has decided
//! (a server name or an error), more bytes never change the answer, since the proxy
//! re-parses as bytes arrive.

#![no_main]

use ambit_proxy_core::fuzzing::{parse_client_hello, Hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = parse_client_hello(data);
    if let Ok(Hello::Complete(Some(name))) = &answer {
        assert_eq!(name, &name.to_ascii_lowercase(), "server names are lower-cased");
    }
    let decided = !matches!(answer, Ok(Hello::Incomplete));
    if decided {
        let mut more = data.to_vec();
        more.extend_from_slice(&[0x16, 0x03, 0x01, 0x00]);
        assert_eq!(parse_client_hello(&more), answer, "trailing bytes changed a decided answer");
    } else {
        for end in [0, data.len() / 2, data.len().saturating_sub(1)] {
            let prefix = parse_client_hello(&data[..end]);
            assert_eq!(prefix, Ok(Hello::Incomplete), "a prefix of an incomplete hello was decided");
        }
    }
});
