//! libtorch's c10d through the C shim (`c10d_shim.cpp`): a TCPStore and a Gloo or NCCL
//! process group. Every call returns the C++ exception's message as an error, never unwinds.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use anyhow::{Result, anyhow};

#[repr(C)]
struct RawStore {
    _private: [u8; 0],
}
#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}

unsafe extern "C" {
    fn runner_c10d_free(p: *mut c_void);
    fn runner_c10d_has(name: *const c_char) -> c_int;
    fn runner_c10d_store_new(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    fn runner_c10d_store_free(s: *mut RawStore);
    fn runner_c10d_store_set(
        s: *mut RawStore,
        key: *const c_char,
        data: *const u8,
        len: usize,
    ) -> *mut c_char;
    fn runner_c10d_store_get(
        s: *mut RawStore,
        key: *const c_char,
        timeout_ms: i64,
        data: *mut *mut u8,
        len: *mut usize,
    ) -> *mut c_char;
    fn runner_c10d_group_new(
        s: *mut RawStore,
        backend: *const c_char,
        gloo_ifname: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    fn runner_c10d_group_free(g: *mut RawGroup);
    fn runner_c10d_all_reduce_sum(
        g: *mut RawGroup,
        tensors: *mut *mut torch_sys::C_tensor,
        n: usize,
    ) -> *mut c_char;
    fn runner_c10d_broadcast(
        g: *mut RawGroup,
        tensors: *mut *mut torch_sys::C_tensor,
        n: usize,
        root: c_int,
    ) -> *mut c_char;
}

/// The shim's message, freed; `Ok` for NULL.
fn check(err: *mut c_char) -> Result<()> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL return is a NUL-terminated string malloc'd by the shim.
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .trim()
        .to_string();
    unsafe { runner_c10d_free(err.cast()) };
    Err(anyhow!(text))
}

fn c(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("`{s}` contains a NUL byte"))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether this binary has c10d's `backend` ("gloo" or "nccl").
pub fn has(backend: &str) -> bool {
    let name = c(backend).expect("a backend name has no NUL");
    // SAFETY: a valid C string; the function only compares it.
    unsafe { runner_c10d_has(name.as_ptr()) != 0 }
}

/// A c10d TCPStore: rank 0 serves it, every rank (and each watchdog) is a client.
pub struct Store(NonNull<RawStore>);

// SAFETY: c10d's TCPStore serialises its operations with a lock of its own.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// Serves (`serve`) or joins the store at `host:port`, retrying a connection until
    /// `timeout`, which is also how long a `get` waits for its key.
    pub fn connect(
        host: &str,
        port: u16,
        serve: bool,
        world: usize,
        timeout: Duration,
    ) -> Result<Store> {
        let host_c = c(host)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: valid arguments; `out` is written on success only.
        check(unsafe {
            runner_c10d_store_new(
                host_c.as_ptr(),
                port,
                c_int::from(serve),
                c_int::try_from(world).unwrap_or(c_int::MAX),
                millis(timeout),
                &mut out,
            )
        })?;
        NonNull::new(out)
            .map(Store)
            .ok_or_else(|| anyhow!("the c10d store was not created"))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = c(key)?;
        // SAFETY: the store is alive; `value` is valid for its length.
        check(unsafe {
            runner_c10d_store_set(self.0.as_ptr(), key.as_ptr(), value.as_ptr(), value.len())
        })
    }

    /// `key`'s value, waiting up to `timeout` for some rank to set it.
    pub fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>> {
        let key_c = c(key)?;
        let mut data = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: the store is alive; on success `data` is a malloc'd buffer of `len` bytes.
        check(unsafe {
            runner_c10d_store_get(
                self.0.as_ptr(),
                key_c.as_ptr(),
                millis(timeout),
                &mut data,
                &mut len,
            )
        })?;
        let value = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { runner_c10d_free(data.cast()) };
        Ok(value)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by runner_c10d_store_new, freed once.
        unsafe { runner_c10d_store_free(self.0.as_ptr()) }
    }
}

/// A c10d process group (ProcessGroupGloo or ProcessGroupNCCL).
pub struct Group(NonNull<RawGroup>);

// SAFETY: c10d backends queue work from any thread; runner calls them from the training
// thread only.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    /// Joins the group over `backend` of `world` ranks, rendezvousing through `store`. Gloo
    /// binds to `gloo_ifname`'s address when given (torch's GLOO_SOCKET_IFNAME), else to this
    /// machine's hostname.
    pub fn new(
        store: &Store,
        backend: &str,
        gloo_ifname: Option<&str>,
        rank: usize,
        world: usize,
        timeout: Duration,
    ) -> Result<Group> {
        let backend_c = c(backend)?;
        let ifname = c(gloo_ifname.unwrap_or(""))?;
        let mut out = std::ptr::null_mut();
        // SAFETY: valid arguments; the store outlives the call (the group keeps its own
        // reference to it).
        check(unsafe {
            runner_c10d_group_new(
                store.0.as_ptr(),
                backend_c.as_ptr(),
                ifname.as_ptr(),
                c_int::try_from(rank)?,
                c_int::try_from(world)?,
                millis(timeout),
                &mut out,
            )
        })?;
        NonNull::new(out)
            .map(Group)
            .ok_or_else(|| anyhow!("the c10d process group was not created"))
    }

    /// Sums the tensors across ranks, in place.
    pub fn all_reduce_sum(&self, tensors: &mut [tch::Tensor]) -> Result<()> {
        let mut ptrs: Vec<*mut torch_sys::C_tensor> =
            tensors.iter_mut().map(|t| t.as_mut_ptr()).collect();
        // SAFETY: live tensors, exclusively borrowed for the call.
        check(unsafe { runner_c10d_all_reduce_sum(self.0.as_ptr(), ptrs.as_mut_ptr(), ptrs.len()) })
    }

    /// Overwrites the tensors with rank 0's, in place.
    pub fn broadcast(&self, tensors: &mut [tch::Tensor]) -> Result<()> {
        let mut ptrs: Vec<*mut torch_sys::C_tensor> =
            tensors.iter_mut().map(|t| t.as_mut_ptr()).collect();
        // SAFETY: as above.
        check(unsafe { runner_c10d_broadcast(self.0.as_ptr(), ptrs.as_mut_ptr(), ptrs.len(), 0) })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: created by runner_c10d_group_new, freed once.
        unsafe { runner_c10d_group_free(self.0.as_ptr()) }
    }
}
