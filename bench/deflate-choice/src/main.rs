//! Compresses and inflates the gateway's test messages with one DEFLATE
//! backend (chosen by cargo feature) the way permessage-deflate does with
//! no context takeover: each message from a fresh (reset) state, sync
//! flush, at levels 1, 2 and 6. Prints, per message and level, the
//! compressed size and the nanoseconds per compress and per inflate (the
//! median of 9 rounds of `N` messages).
//!
//!     cargo run --release --features zlib-rs -- FILE...

use std::time::Instant;

const ROUNDS: usize = 9;
const N: usize = 20_000;

#[cfg(feature = "libdeflate")]
const BACKEND: &str = "libdeflater";
#[cfg(all(feature = "zlib-rs", not(feature = "libdeflate")))]
const BACKEND: &str = "flate2 + zlib-rs";
#[cfg(all(feature = "miniz", not(feature = "zlib-rs"), not(feature = "libdeflate")))]
const BACKEND: &str = "flate2 + miniz_oxide";

/// One backend's compressor and decompressor, kept across messages.
#[cfg(not(feature = "libdeflate"))]
struct Codec {
    c: flate2::Compress,
    d: flate2::Decompress,
}

#[cfg(not(feature = "libdeflate"))]
impl Codec {
    fn new(level: u32) -> Codec {
        Codec {
            c: flate2::Compress::new(flate2::Compression::new(level), false),
            d: flate2::Decompress::new(false),
        }
    }

    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.c.reset();
        out.clear();
        self.c
            .compress_vec(data, out, flate2::FlushCompress::Sync)
            .expect("compress");
        assert_eq!(self.c.total_in() as usize, data.len(), "output too small");
        out.truncate(out.len() - 4);
    }

    fn inflate(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.d.reset(false);
        out.clear();
        for part in [data, &[0, 0, 0xff, 0xff][..]] {
            self.d
                .decompress_vec(part, out, flate2::FlushDecompress::Sync)
                .expect("inflate");
        }
    }
}

/// libdeflate has no streaming, no sync flush and no window below 15: a
/// message is one final block, inflated into a buffer of a known size.
#[cfg(feature = "libdeflate")]
struct Codec {
    c: libdeflater::Compressor,
    d: libdeflater::Decompressor,
}

#[cfg(feature = "libdeflate")]
impl Codec {
    fn new(level: u32) -> Codec {
        Codec {
            c: libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(level as i32).expect("level"),
            ),
            d: libdeflater::Decompressor::new(),
        }
    }

    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.resize(self.c.deflate_compress_bound(data.len()), 0);
        let n = self.c.deflate_compress(data, out).expect("compress");
        out.truncate(n);
    }

    fn inflate(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let n = self.d.deflate_decompress(data, out).expect("inflate");
        out.truncate(n);
    }
}

fn median_ns(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            t.elapsed().as_nanos() as f64 / N as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[ROUNDS / 2]
}

fn main() {
    for level in [1, 2, 6] {
        for path in std::env::args().skip(1) {
            measure(level, &path);
        }
    }
}

fn measure(level: u32, path: &str) {
    let mut codec = Codec::new(level);
    {
        let text = std::fs::read_to_string(path).expect("read");
        let msg = text.trim_end().as_bytes().to_vec();
        let mut packed = Vec::with_capacity(msg.len() + 64);
        let mut plain = Vec::with_capacity(msg.len() + 64);
        plain.resize(msg.len(), 0);
        codec.compress(&msg, &mut packed);
        codec.inflate(&packed, &mut plain);
        assert_eq!(plain, msg, "{path}: round trip");
        let size = packed.len();
        let c = median_ns(|| codec.compress(&msg, &mut packed));
        let d = median_ns(|| {
            plain.resize(msg.len(), 0);
            codec.inflate(&packed, &mut plain)
        });
        let name = path.rsplit('/').next().unwrap_or(path);
        println!(
            "{BACKEND}\tlevel {level}\t{name}\t{} B -> {size} B\tcompress {c:.0} ns\tinflate {d:.0} ns",
            msg.len()
        );
    }
}
