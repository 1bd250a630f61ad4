//! The two small protobuf messages of Envoy's `verify_signature` foreign function
//! (`envoy.source.extensions.common.wasm.VerifySignatureArguments` / `…Result`), encoded and
//! decoded by hand: four length-delimited fields out, a bool and a string back. Not worth a
//! `prost` + `protoc` build dependency.

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// `VerifySignatureArguments{hash_function=1, public_key=2 (DER SPKI), signature=3, text=4}`.
pub fn encode_arguments(hash: &str, spki_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hash.len() + spki_der.len() + signature.len() + text.len() + 24);
    put_bytes(&mut out, 1, hash.as_bytes());
    put_bytes(&mut out, 2, spki_der);
    put_bytes(&mut out, 3, signature);
    put_bytes(&mut out, 4, text);
    out
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// `VerifySignatureResult{result=1 (bool), error=2 (string)}` → `(result, error)`.
/// `None` when the bytes are not a well-formed message (never read as "valid").
pub fn decode_result(bytes: &[u8]) -> Option<(bool, String)> {
    let (mut result, mut error) = (false, String::new());
    let mut pos = 0;
    while pos < bytes.len() {
        let tag = get_varint(bytes, &mut pos)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => result = get_varint(bytes, &mut pos)? != 0,
            (field, 2) => {
                let len = usize::try_from(get_varint(bytes, &mut pos)?).ok()?;
                let value = bytes.get(pos..pos.checked_add(len)?)?;
                pos += len;
                if field == 2 {
                    error = String::from_utf8_lossy(value).into_owned();
                }
            }
            (_, 0) => {
                get_varint(bytes, &mut pos)?;
            }
            _ => return None,
        }
    }
    Some((result, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_in_order_with_varint_lengths() {
        let sig = vec![0xAB; 300];
        let out = encode_arguments("sha256", b"K", &sig, b"t");
        assert_eq!(&out[..8], &[0x0A, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&out[8..11], &[0x12, 1, b'K']);
        assert_eq!(&out[11..14], &[0x1A, 0xAC, 0x02], "300 = 0xAC 0x02");
        assert_eq!(&out[out.len() - 3..], &[0x22, 1, b't']);
    }

    #[test]
    fn decodes_true_false_and_error_text() {
        assert_eq!(decode_result(&[0x08, 0x01]), Some((true, String::new())));
        assert_eq!(decode_result(&[]), Some((false, String::new())));
        assert_eq!(decode_result(&[0x12, 2, b'n', b'o']), Some((false, "no".into())));
        assert_eq!(decode_result(&[0x08, 0x00, 0x12, 1, b'x']), Some((false, "x".into())));
    }

    #[test]
    fn malformed_results_are_not_read_as_valid() {
        assert_eq!(decode_result(&[0x08]), None);
        assert_eq!(decode_result(&[0x12, 5, b'a']), None);
        assert_eq!(decode_result(&[0x0D, 1, 2, 3, 4]), None, "fixed32 wire type unsupported");
    }
}
