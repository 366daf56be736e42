//! The few raw `bpf(2)` commands aya does not expose: opening a pinned object,
//! force-detaching a link, and counting the programs attached to a cgroup.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `union bpf_attr`, as zeroed bytes large enough for every command used here.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }
    fn put_u32(&mut self, offset: usize, v: u32) {
        self.0[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, offset: usize, v: u64) {
        self.0[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.0[offset..offset + 4].try_into().expect("4 bytes"))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable, zero-initialised bpf_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>() as u32,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens a pinned BPF object (map, program or link).
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut attr = Attr::new();
    attr.put_u64(0, c.as_ptr() as u64); // pathname
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Detaches a link from its hook now, whoever else still holds it open.
pub fn link_detach(link: &OwnedFd) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.put_u32(0, link.as_raw_fd() as u32); // link_detach.link_fd
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}

/// Number of programs attached directly (not inherited) to `cgroup` at `attach_type`.
pub fn prog_query_count(cgroup: &OwnedFd, attach_type: u32) -> io::Result<usize> {
    let mut attr = Attr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32); // query.target_fd
    attr.put_u32(4, attach_type); // query.attach_type
                                  // query_flags 0: only this cgroup's own attachments; prog_ids NULL: count only.
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(attr.get_u32(24) as usize) // query.prog_cnt
}
