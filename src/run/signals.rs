//! Ctrl-C and SIGTERM for a run that trains alone: the first asks the trainer to stop at the
//! next step boundary (it checkpoints, the run records `interrupted`, and runner exits 130 or
//! 143 as a shell expects); a second ends the process at once with that code. Data-parallel
//! ranks keep the default handling: their launcher (runner's, torchrun, srun) stops them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

/// The installed handlers. They stay for the rest of the process (signal-hook cannot put the
/// default handling back): after training, a first signal is noted and a second exits.
pub struct Stop {
    armed: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

impl Stop {
    pub fn install() -> Result<Stop> {
        let armed = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            let register = || -> std::io::Result<()> {
                // Registered first, so that it sees the flag as the previous signal left it: a
                // second signal exits at once.
                signal_hook::flag::register_conditional_shutdown(
                    sig,
                    exit_code(sig),
                    armed.clone(),
                )?;
                signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
                signal_hook::flag::register(sig, armed.clone())?;
                Ok(())
            };
            register().context("cannot install the SIGINT/SIGTERM handlers")?;
        }
        Ok(Stop { armed, which })
    }

    /// The signal that asked to stop, if one did.
    pub fn requested(&self) -> Option<i32> {
        self.armed
            .load(Ordering::SeqCst)
            .then(|| self.which.load(Ordering::SeqCst) as i32)
    }
}

/// 128 + the signal's number, as shells report a process a signal ended.
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// `SIGINT`, `SIGTERM`.
pub fn name(sig: i32) -> String {
    match sig {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_asks_to_stop_and_is_named() {
        let stop = Stop::install().unwrap();
        assert_eq!(stop.requested(), None);
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert_eq!(stop.requested(), Some(SIGTERM));
        assert_eq!(
            (name(SIGTERM).as_str(), exit_code(SIGTERM)),
            ("SIGTERM", 143)
        );
        assert_eq!(exit_code(SIGINT), 130);
    }
}
