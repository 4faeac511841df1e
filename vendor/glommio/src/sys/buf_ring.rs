// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// ws-gateway patch: a provided-buffer ring (IORING_REGISTER_PBUF_RING, kernel
// 5.19) for multishot IORING_OP_RECV (kernel 6.0). The vendored liburing
// predates both, so the ABI pieces are defined here from
// include/uapi/linux/io_uring.h.
//
// One ring per executor, registered on the main ring. The kernel takes a
// buffer from the ring's head for every receive and names it in the CQE
// (`flags >> 16`); the buffer is ours until we put it back at the tail. A
// socket holds buffers only while received bytes wait to be read, so an idle
// connection costs none.
use std::{
    cell::Cell,
    collections::VecDeque,
    fmt, io,
    os::unix::io::RawFd,
    ptr,
    rc::Rc,
    sync::atomic::{AtomicU16, Ordering},
};

/// `sqe->flags`: the kernel picks the buffer from the group in `buf_group`.
pub(crate) const IOSQE_BUFFER_SELECT: u8 = 1 << 5;
/// `sqe->ioprio` for IORING_OP_RECV: keep receiving until told otherwise.
pub(crate) const IORING_RECV_MULTISHOT: u16 = 1 << 1;
/// `cqe->flags`: the upper 16 bits carry the buffer id.
pub(crate) const IORING_CQE_F_BUFFER: u32 = 1 << 0;
/// `cqe->flags`: the request stays armed and will post more CQEs.
pub(crate) const IORING_CQE_F_MORE: u32 = 1 << 1;
pub(crate) const IORING_CQE_BUFFER_SHIFT: u32 = 16;
const IORING_REGISTER_PBUF_RING: libc::c_uint = 22;
const IORING_UNREGISTER_PBUF_RING: libc::c_uint = 23;

/// `struct io_uring_buf_reg`
#[repr(C)]
#[derive(Default)]
struct BufReg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

/// `struct io_uring_buf`; the ring's tail overlays `resv` of entry 0.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RingEntry>() == 16);
const _: () = assert!(std::mem::size_of::<BufReg>() == 40);

/// The buffer group id glommio registers its ring under.
pub(crate) const RECV_BGID: u16 = 0;

/// Number and size of the receive buffers of each executor.
#[derive(Debug, Clone, Copy)]
pub struct RecvBufferConfig {
    /// Buffers in the ring: a power of two, at most 32768; 0 disables
    /// multishot receive (sockets are read with `recv(2)` as upstream
    /// glommio does).
    pub count: usize,
    /// Bytes per buffer.
    pub size: usize,
}

impl Default for RecvBufferConfig {
    /// 2048 buffers of 512 B: 1 MiB per executor. A buffer is held from the
    /// CQE that fills it until the read that empties it, so the count bounds
    /// how many sockets can have unread data at once: 2048 covers a 50 ms
    /// stall of the executor at 40k messages/s (512 did not: the ring ran
    /// dry under perf). The size only needs to hold a typical message: a
    /// 50 B frame or an upgrade request takes one buffer, a 1 KiB frame
    /// three. The kernel fills the ring's buffers in turn, so all of it
    /// becomes resident (count × size) whatever the connection count: kept
    /// small for idle RSS. Running dry is not an error (see
    /// `MultishotEnd::NoBuffers`).
    fn default() -> Self {
        RecvBufferConfig {
            count: 2048,
            size: 512,
        }
    }
}

fn mmap_anon(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping at an address the kernel picks
    // (null hint, fd -1): it cannot overlap memory Rust already uses, and no
    // pointer of ours is passed in. The result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p as *mut u8)
    }
}

pub(crate) struct BufRing {
    ring_fd: RawFd,
    entries: *mut RingEntry,
    entries_len: usize,
    data: *mut u8,
    data_len: usize,
    buf_size: usize,
    count: u16,
    mask: u16,
    tail: Cell<u16>,
    /// Buffers the kernel handed us that are not back in the ring yet.
    out: Cell<usize>,
    registered: Cell<bool>,
}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("count", &self.count)
            .field("buf_size", &self.buf_size)
            .field("out", &self.out.get())
            .finish()
    }
}

impl BufRing {
    /// Maps the ring and the buffers, fills the ring and registers it with
    /// the io_uring `ring_fd`. Fails on kernels without
    /// IORING_REGISTER_PBUF_RING (EINVAL) or without multishot receive.
    pub(crate) fn new(ring_fd: RawFd, config: RecvBufferConfig) -> io::Result<Rc<BufRing>> {
        let count = config.count;
        if count == 0 || !count.is_power_of_two() || count > 32768 || config.size == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if !kernel_has_multishot_recv() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot recv needs Linux 6.0",
            ));
        }
        let page = 4096;
        let entries_len = (count * std::mem::size_of::<RingEntry>() + page - 1) / page * page;
        let data_len = count * config.size;
        let entries = mmap_anon(entries_len)? as *mut RingEntry;
        let data = match mmap_anon(data_len) {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: `entries` was mapped just above with this length
                // and nothing else refers to it yet (no `BufRing` exists).
                unsafe { libc::munmap(entries as _, entries_len) };
                return Err(e);
            }
        };
        let ring = BufRing {
            ring_fd,
            entries,
            entries_len,
            data,
            data_len,
            buf_size: config.size,
            count: count as u16,
            mask: (count - 1) as u16,
            tail: Cell::new(0),
            out: Cell::new(0),
            registered: Cell::new(false),
        };
        for bid in 0..count {
            ring.push(bid as u16);
        }
        ring.publish();

        let reg = BufReg {
            ring_addr: entries as u64,
            ring_entries: count as u32,
            bgid: RECV_BGID,
            ..Default::default()
        };
        // SAFETY: `reg` is a live `struct io_uring_buf_reg` (repr(C), size
        // checked above) for the duration of the call, and nr_args is 1. The
        // kernel keeps using `ring_addr` (page aligned: from mmap) after the
        // call; that mapping lives until `Drop`, which unregisters first. If
        // registration fails, `ring` is dropped here and, `registered` being
        // false, only unmaps.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring_fd,
                IORING_REGISTER_PBUF_RING,
                &reg as *const BufReg,
                1,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        ring.registered.set(true);
        Ok(Rc::new(ring))
    }

    /// Buffers currently in the ring, available to the kernel.
    pub(crate) fn available(&self) -> usize {
        self.count as usize - self.out.get()
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.count as usize
    }

    /// Writes `bid` at the (unpublished) tail.
    fn push(&self, bid: u16) {
        assert!(bid < self.count, "buffer id {bid} out of the ring");
        let tail = self.tail.get();
        // SAFETY: `tail & mask` < `count`, and `entries` maps `count`
        // entries, so `e` is in bounds; `bid` < `count` (checked above), so
        // the buffer address is inside `data` (`count * buf_size` bytes).
        // The slot is not one the kernel may read: it lies past the
        // published tail, and fewer than `count` buffers are in the ring
        // (`new` fills an empty, unregistered ring; `give_back` returns a
        // buffer that is out). Only raw pointers reach this memory, no Rust
        // reference, and the fields are written one by one so that `resv` of
        // entry 0, the tail the kernel reads, is not written here.
        unsafe {
            let e = self.entries.add((tail & self.mask) as usize);
            // Field by field: `resv` of entry 0 is the ring's tail.
            ptr::addr_of_mut!((*e).addr)
                .write(self.data.add(bid as usize * self.buf_size) as u64);
            ptr::addr_of_mut!((*e).len).write(self.buf_size as u32);
            ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    /// Makes the pushed entries visible to the kernel.
    fn publish(&self) {
        // SAFETY: bytes 14..16 of the ring are `resv` of entry 0, which the
        // kernel ABI (`struct io_uring_buf_ring`) defines as the ring's tail;
        // the mapping is page aligned, so the u16 is aligned, and it lives as
        // long as `self`. The kernel reads it concurrently, hence an atomic
        // (same layout as u16); Release makes the entries written by `push`
        // visible before the new tail.
        unsafe {
            let tail = &*((self.entries as *mut u8).add(14) as *const AtomicU16);
            tail.store(self.tail.get(), Ordering::Release);
        }
    }

    /// Takes ownership of the buffer a CQE names.
    pub(crate) fn take(self: &Rc<Self>, cqe_flags: u32) -> RingBuf {
        let bid = (cqe_flags >> IORING_CQE_BUFFER_SHIFT) as u16;
        // `as_slice` and `give_back` index the buffers by this id: a real
        // check, not a debug one (the kernel only names ids we pushed).
        assert!(bid < self.count, "CQE names buffer {bid} of {}", self.count);
        self.out.set(self.out.get() + 1);
        RingBuf {
            ring: self.clone(),
            bid,
        }
    }

    fn give_back(&self, bid: u16) {
        self.push(bid);
        self.publish();
        self.out.set(self.out.get() - 1);
    }

    /// Unregisters the ring from the kernel; buffers still out come back
    /// later and are just not used again.
    pub(crate) fn unregister(&self) {
        if self.registered.replace(false) {
            let reg = BufReg {
                bgid: RECV_BGID,
                ..Default::default()
            };
            // SAFETY: `reg` is a live `struct io_uring_buf_reg` for the
            // duration of the call (the kernel reads only `bgid`); no memory
            // of ours is handed over.
            unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    self.ring_fd,
                    IORING_UNREGISTER_PBUF_RING,
                    &reg as *const BufReg,
                    1,
                );
            }
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        self.unregister();
        // SAFETY: both regions were mapped in `new` with these lengths and
        // are unmapped only here. The ring is unregistered, so the kernel
        // selects no more buffers from it (a receive fills the buffer it
        // selects before it posts the CQE); and every `RingBuf` holds an
        // `Rc` to `self`, so no slice of `data` outlives this.
        unsafe {
            libc::munmap(self.entries as _, self.entries_len);
            libc::munmap(self.data as _, self.data_len);
        }
    }
}

fn kernel_has_multishot_recv() -> bool {
    // SAFETY: `utsname` is arrays of `c_char`, for which all zeroes is a
    // valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live, writable `utsname`.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    if !u.release.contains(&0) {
        return false;
    }
    // SAFETY: `release` holds a NUL (checked above), so the string ends
    // inside the array; `u` outlives `release`.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|x| x.parse::<u32>().unwrap_or(0));
    let major = it.next().unwrap_or(0);
    let minor = it.next().unwrap_or(0);
    (major, minor) >= (6, 0)
}

/// A buffer of the ring, out of it until dropped.
pub(crate) struct RingBuf {
    ring: Rc<BufRing>,
    bid: u16,
}

impl RingBuf {
    /// The first `len` bytes of the buffer. Panics if `len` is more than a
    /// buffer holds (the kernel never reports more than that).
    pub(crate) fn as_slice(&self, len: usize) -> &[u8] {
        assert!(
            len <= self.ring.buf_size,
            "{len} bytes in a {} B buffer",
            self.ring.buf_size
        );
        // SAFETY: `bid` < `count` (checked in `take`) and `len` <=
        // `buf_size` (checked above), so the slice lies inside buffer `bid`
        // of `data`, which stays mapped while `self` holds its `Rc`. The
        // kernel wrote it before posting the CQE that handed it to us and
        // does not touch it again until `Drop` puts it back in the ring, and
        // nothing of ours writes it meanwhile.
        unsafe {
            std::slice::from_raw_parts(
                self.ring.data.add(self.bid as usize * self.ring.buf_size),
                len,
            )
        }
    }
}

impl fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuf").field("bid", &self.bid).finish()
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        self.ring.give_back(self.bid);
    }
}

#[derive(Debug)]
enum ChunkData {
    Ring(RingBuf),
    Heap(Box<[u8]>),
}

/// Received bytes waiting to be read: `data[off..len]`.
#[derive(Debug)]
pub(crate) struct RecvChunk {
    data: ChunkData,
    off: usize,
    len: usize,
}

impl RecvChunk {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            ChunkData::Ring(b) => &b.as_slice(self.len)[self.off..],
            ChunkData::Heap(b) => &b[self.off..self.len],
        }
    }
}

/// How a multishot receive ended (its CQE without IORING_CQE_F_MORE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MultishotEnd {
    /// Orderly shutdown by the peer (res 0).
    Eof,
    /// A socket error; reported to the reader once queued bytes are read.
    Error(i32),
    /// The ring had no buffer (ENOBUFS): the socket has data. Re-armed when
    /// buffers are back; until then the reader uses `recv(2)`, so that it
    /// does not wait on other sockets' readers to give buffers back.
    NoBuffers,
    /// Ended with data (the CQ was full), or cancelled by us (backpressure):
    /// re-arm once the queue is read.
    Rearm,
}

/// After this many ring buffers are queued unread on one socket, the queued
/// bytes move to the heap and the receive is cancelled (the socket's own
/// buffer and TCP flow control take over again, as with `recv(2)`; it is
/// re-armed once the queue is read), so that a reader that stalls cannot
/// keep the shared ring dry. 64 × 512 B: well above a WebSocket message.
pub(crate) const MAX_QUEUED_BUFFERS: usize = 64;

/// Received chunks in order. The first one is kept inline: most sockets
/// never have more than one chunk queued, and a `VecDeque` would keep a heap
/// allocation per connection for as long as it lives (1.6 MiB at 10k idle
/// connections); the overflow queue is freed again once drained.
#[derive(Debug, Default)]
pub(crate) struct ChunkQueue {
    first: Option<RecvChunk>,
    more: VecDeque<RecvChunk>,
}

impl ChunkQueue {
    fn push_back(&mut self, chunk: RecvChunk) {
        if self.first.is_none() && self.more.is_empty() {
            self.first = Some(chunk);
        } else {
            self.more.push_back(chunk);
        }
    }

    fn front_mut(&mut self) -> Option<&mut RecvChunk> {
        match self.first {
            Some(ref mut c) => Some(c),
            None => self.more.front_mut(),
        }
    }

    fn pop_front(&mut self) -> Option<RecvChunk> {
        let c = match self.first.take() {
            Some(c) => Some(c),
            None => self.more.pop_front(),
        };
        if self.more.is_empty() && self.more.capacity() > 0 {
            self.more = VecDeque::new();
        }
        c
    }

    fn iter(&self) -> impl Iterator<Item = &RecvChunk> {
        self.first.iter().chain(self.more.iter())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut RecvChunk> {
        self.first.iter_mut().chain(self.more.iter_mut())
    }

    fn clear(&mut self) {
        self.first = None;
        self.more = VecDeque::new();
    }
}

/// State of one multishot receive, kept in its `Source`.
#[derive(Debug, Default)]
pub(crate) struct MultishotRecv {
    pub(crate) queue: ChunkQueue,
    ring_bufs: usize,
    pub(crate) end: Option<MultishotEnd>,
    /// The stream is gone: CQEs still in flight only return their buffers.
    pub(crate) orphaned: bool,
    pub(crate) cancel_requested: bool,
}

impl MultishotRecv {
    /// Records one CQE of this receive. Returns true when the receive should
    /// be cancelled (too much queued unread).
    pub(crate) fn complete(
        &mut self,
        res: i32,
        flags: u32,
        more: bool,
        ring: Option<&Rc<BufRing>>,
    ) -> bool {
        let buf = match ring {
            Some(ring) if flags & IORING_CQE_F_BUFFER != 0 => Some(ring.take(flags)),
            _ => None,
        };
        if !more {
            self.end = Some(match res {
                0 => MultishotEnd::Eof,
                r if r > 0 => MultishotEnd::Rearm,
                r if r == -libc::ENOBUFS => MultishotEnd::NoBuffers,
                r if r == -libc::ECANCELED => MultishotEnd::Rearm,
                r => MultishotEnd::Error(-r),
            });
        } else if res == 0 {
            self.end = Some(MultishotEnd::Eof);
        }
        if self.orphaned {
            return false;
        }
        if res > 0 {
            if let Some(buf) = buf {
                self.queue.push_back(RecvChunk {
                    data: ChunkData::Ring(buf),
                    off: 0,
                    len: res as usize,
                });
                self.ring_bufs += 1;
            }
        }
        if self.ring_bufs >= MAX_QUEUED_BUFFERS {
            // The reader is behind (or a burst outran it): give the buffers
            // back and let the socket hold the rest, as it does with recv(2).
            self.spill();
            if more && !self.cancel_requested {
                self.cancel_requested = true;
                return true;
            }
        }
        false
    }

    /// Copies the queued ring buffers to the heap and gives them back.
    fn spill(&mut self) {
        for chunk in self.queue.iter_mut() {
            if let ChunkData::Ring(b) = &chunk.data {
                let heap: Box<[u8]> = b.as_slice(chunk.len).into();
                chunk.data = ChunkData::Heap(heap);
            }
        }
        self.ring_bufs = 0;
    }

    /// Moves queued bytes into `buf`, giving each ring buffer back as soon
    /// as it is read to the end.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let chunk = match self.queue.front_mut() {
                Some(c) => c,
                None => break,
            };
            let src = chunk.bytes();
            let sz = std::cmp::min(src.len(), buf.len() - n);
            buf[n..n + sz].copy_from_slice(&src[..sz]);
            n += sz;
            chunk.off += sz;
            if chunk.off == chunk.len {
                if let Some(RecvChunk {
                    data: ChunkData::Ring(_),
                    ..
                }) = self.queue.pop_front()
                {
                    self.ring_bufs -= 1;
                }
            }
        }
        n
    }

    /// Copies queued bytes into `buf` without consuming them.
    pub(crate) fn peek(&self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for chunk in self.queue.iter() {
            if n == buf.len() {
                break;
            }
            let src = chunk.bytes();
            let sz = std::cmp::min(src.len(), buf.len() - n);
            buf[n..n + sz].copy_from_slice(&src[..sz]);
            n += sz;
        }
        n
    }

    /// Drops everything queued (buffers go back to the ring).
    pub(crate) fn orphan(&mut self) {
        self.orphaned = true;
        self.queue.clear();
        self.ring_bufs = 0;
    }
}
