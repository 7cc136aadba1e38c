//! The drivers' life cycle, with libmesos' rules: a driver starts once;
//! `stop` and `abort` end it; every call on a driver that is not running
//! does nothing and answers the current status.
//!
//! Pure: the JNI layer keeps one [`Lifecycle`] per driver behind a mutex and
//! acts on the transitions it returns.

/// `org.apache.mesos.Protos.Status`, with Mesos' numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverStatus {
    /// Constructed, `start` not yet called.
    NotStarted = 1,
    /// Started; calls are accepted.
    Running = 2,
    /// `abort`ed (or aborted itself after an error); only `stop` is allowed.
    Aborted = 3,
    /// Stopped for good.
    Stopped = 4,
}

impl DriverStatus {
    /// The Java enum constant's name.
    pub fn java_name(self) -> &'static str {
        match self {
            Self::NotStarted => "DRIVER_NOT_STARTED",
            Self::Running => "DRIVER_RUNNING",
            Self::Aborted => "DRIVER_ABORTED",
            Self::Stopped => "DRIVER_STOPPED",
        }
    }
}

/// What a `stop` asks of the running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// `stop(false)`: remove the framework (TEARDOWN) and its tasks.
    Teardown,
    /// `stop(true)`: leave the framework to fail over: close the
    /// subscription, the master keeps it for its failover timeout.
    Failover,
}

/// A driver's status, changed only through the rules below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    status: DriverStatus,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A driver not yet started.
    pub fn new() -> Self {
        Self {
            status: DriverStatus::NotStarted,
        }
    }

    /// The current status.
    pub fn status(&self) -> DriverStatus {
        self.status
    }

    /// `start()`: only a driver that was never started starts. Returns the
    /// status to answer and whether the session must be started now.
    pub fn start(&mut self) -> (DriverStatus, bool) {
        if self.status != DriverStatus::NotStarted {
            return (self.status, false);
        }
        self.status = DriverStatus::Running;
        (self.status, true)
    }

    /// `stop(failover)`: allowed on a running or aborted driver. Returns the
    /// status to answer (ABORTED for an aborted driver, as libmesos does)
    /// and what the session must do: `None` when nothing is running any
    /// more (never started, already stopped, or aborted, whose session is
    /// already over).
    pub fn stop(&mut self, failover: bool) -> (DriverStatus, Option<StopKind>) {
        match self.status {
            DriverStatus::Running => {
                self.status = DriverStatus::Stopped;
                let kind = if failover {
                    StopKind::Failover
                } else {
                    StopKind::Teardown
                };
                (DriverStatus::Stopped, Some(kind))
            }
            DriverStatus::Aborted => {
                self.status = DriverStatus::Stopped;
                (DriverStatus::Aborted, None)
            }
            other => (other, None),
        }
    }

    /// `abort()` (or an error the driver cannot recover from): only a
    /// running driver aborts. Returns the status to answer and whether the
    /// session must be ended now.
    pub fn abort(&mut self) -> (DriverStatus, bool) {
        if self.status != DriverStatus::Running {
            return (self.status, false);
        }
        self.status = DriverStatus::Aborted;
        (self.status, true)
    }

    /// Whether `join()` must keep waiting.
    pub fn joining(&self) -> bool {
        self.status == DriverStatus::Running
    }

    /// Any other call (launch, decline, kill...): `Ok` when the driver is
    /// running and the call should be sent, else the status to answer.
    pub fn call(&self) -> Result<DriverStatus, DriverStatus> {
        if self.status == DriverStatus::Running {
            Ok(self.status)
        } else {
            Err(self.status)
        }
    }

    /// Whether callbacks may still be delivered to the application: only
    /// while running (libmesos drops them once stopped or aborted).
    pub fn delivers(&self) -> bool {
        self.status == DriverStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DriverStatus::*;

    #[test]
    fn calls_before_start_do_nothing() {
        let mut l = Lifecycle::new();
        assert_eq!(l.call(), Err(NotStarted));
        assert_eq!(l.abort(), (NotStarted, false));
        assert_eq!(l.stop(false), (NotStarted, None));
        assert!(!l.joining());
        assert!(!l.delivers());
    }

    #[test]
    fn start_once() {
        let mut l = Lifecycle::new();
        assert_eq!(l.start(), (Running, true));
        assert_eq!(l.start(), (Running, false));
        assert_eq!(l.call(), Ok(Running));
        assert!(l.joining());
        assert!(l.delivers());
    }

    #[test]
    fn stop_without_failover_tears_down_and_is_final() {
        let mut l = Lifecycle::new();
        l.start();
        assert_eq!(l.stop(false), (Stopped, Some(StopKind::Teardown)));
        assert_eq!(l.call(), Err(Stopped));
        assert_eq!(
            l.start(),
            (Stopped, false),
            "a stopped driver never restarts"
        );
        assert_eq!(l.stop(false), (Stopped, None), "second stop does nothing");
        assert_eq!(l.abort(), (Stopped, false));
        assert!(!l.joining());
        assert!(!l.delivers());
    }

    #[test]
    fn stop_with_failover_leaves_the_framework() {
        let mut l = Lifecycle::new();
        l.start();
        assert_eq!(l.stop(true), (Stopped, Some(StopKind::Failover)));
    }

    #[test]
    fn abort_then_stop_answers_aborted() {
        let mut l = Lifecycle::new();
        l.start();
        assert_eq!(l.abort(), (Aborted, true));
        assert_eq!(l.abort(), (Aborted, false));
        assert_eq!(l.call(), Err(Aborted));
        assert!(!l.joining(), "join returns once aborted");
        assert_eq!(l.stop(false), (Aborted, None));
        assert_eq!(l.status(), Stopped);
        assert_eq!(l.call(), Err(Stopped));
    }

    #[test]
    fn java_names_match_protos_status() {
        let names: Vec<_> = [NotStarted, Running, Aborted, Stopped]
            .map(|s| (s as i32, s.java_name()))
            .into();
        assert_eq!(
            names,
            vec![
                (1, "DRIVER_NOT_STARTED"),
                (2, "DRIVER_RUNNING"),
                (3, "DRIVER_ABORTED"),
                (4, "DRIVER_STOPPED")
            ]
        );
    }
}
