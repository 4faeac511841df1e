//! RFC 6455 §5.2 frame headers: the first byte as given, the payload length
//! in its shortest form (7 bits, then 16, then 64), the mask bit and key
//! when there is a mask. The sink's server frames and the tests' raw client
//! frames are built here.

/// Appends a frame header: `b0` (FIN, RSV, opcode) as it is, then `len` in
/// its shortest form, with the mask bit and the key when `mask` is given.
pub fn header(out: &mut Vec<u8>, b0: u8, mask: Option<[u8; 4]>, len: u64) {
    let bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// A whole client frame, as a browser sends it: the header, then `payload`
/// masked with `mask` (RFC 6455 §5.3).
pub fn masked(b0: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    header(&mut f, b0, Some(mask), payload.len() as u64);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [1, 2, 3, 4];

    #[test]
    fn a_short_masked_frame_by_hand() {
        // FIN + text, mask bit + 5, the key, "hello" XOR 1 2 3 4 1.
        let want = [
            0x81,
            0x85,
            1,
            2,
            3,
            4,
            b'h' ^ 1,
            b'e' ^ 2,
            b'l' ^ 3,
            b'l' ^ 4,
            b'o' ^ 1,
        ];
        assert_eq!(masked(0x81, KEY, b"hello"), want);
    }

    #[test]
    fn lengths_take_the_shortest_form_at_each_boundary() {
        let head = |len: u64, mask| {
            let mut out = Vec::new();
            header(&mut out, 0x82, mask, len);
            out
        };
        assert_eq!(head(125, None), [0x82, 125]);
        assert_eq!(head(126, None), [0x82, 126, 0, 126]);
        assert_eq!(head(65535, None), [0x82, 126, 0xff, 0xff]);
        assert_eq!(head(65536, None), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(head(125, Some(KEY)), [0x82, 0x80 | 125, 1, 2, 3, 4]);
        assert_eq!(head(126, Some(KEY)), [0x82, 0x80 | 126, 0, 126, 1, 2, 3, 4]);
        assert_eq!(
            head(65536, Some(KEY)),
            [0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn a_long_payload_is_masked_all_the_way() {
        let payload = vec![0u8; 65536];
        let f = masked(0x02, KEY, &payload);
        assert_eq!(f.len(), 14 + 65536);
        assert_eq!(&f[..2], [0x02, 0x80 | 127]);
        assert!(f[14..].chunks(4).all(|c| c == KEY));
    }
}
