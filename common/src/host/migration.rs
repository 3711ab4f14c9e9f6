//! The migration lock, journaled before the hypervisor is asked: a migration (or an
//! export) begins only once the save that carries its lock is on disk; a failed save,
//! or one not done within [`SAVE_LIMIT`], calls it off. The driver writes the lock and
//! asks libvirt.

use std::time::Duration;

use super::maintenance::SAVE_LIMIT;

/// A migration `T` whose lock is being journaled.
#[derive(Debug)]
pub struct Journaling<T> {
    /// The save of the lock.
    pub seq: u64,
    /// When it was queued.
    pub since: Duration,
    /// What begins once the lock is on disk.
    pub then: T,
}

/// How the wait for a lock ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LockOutcome<T> {
    /// On disk: ask the hypervisor now.
    Begin(T),
    /// Not on disk (why): the migration does not happen, and a late write of the lock
    /// is undone.
    CallOff(T, String),
}

/// The lock being journaled, if any (one migration at a time).
#[derive(Debug)]
pub struct LockJournal<T> {
    journaling: Option<Journaling<T>>,
}

impl<T> Default for LockJournal<T> {
    fn default() -> Self {
        LockJournal { journaling: None }
    }
}

impl<T> LockJournal<T> {
    /// Save `seq`, queued at `since`, carries the lock of `then`.
    pub fn wait(&mut self, seq: u64, since: Duration, then: T) {
        self.journaling = Some(Journaling { seq, since, then });
    }

    /// The migration waiting for its lock.
    pub fn pending(&self) -> Option<&T> {
        self.journaling.as_ref().map(|j| &j.then)
    }

    /// Save `seq` of the lock file ended with `result` (an older save, such as the
    /// removal of an earlier lock, settles nothing).
    pub fn saved(&mut self, seq: u64, result: Result<(), String>) -> Option<LockOutcome<T>> {
        let j = self.journaling.take_if(|j| seq >= j.seq)?;
        Some(match result {
            Ok(()) => LockOutcome::Begin(j.then),
            Err(why) => {
                LockOutcome::CallOff(j.then, format!("cannot journal the migration lock: {why}"))
            }
        })
    }

    /// The migration whose lock was not on disk within [`SAVE_LIMIT`] at `now`, with
    /// why (`file` names the lock file).
    pub fn overdue(&mut self, now: Duration, file: &str) -> Option<LockOutcome<T>> {
        let j = self
            .journaling
            .take_if(|j| now.saturating_sub(j.since) >= SAVE_LIMIT)?;
        let why = format!(
            "the migration lock could not be written to {file} within {} s (is the state disk \
             slow or blocked?)",
            SAVE_LIMIT.as_secs()
        );
        Some(LockOutcome::CallOff(j.then, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_hypervisor_is_asked_only_once_the_lock_is_on_disk() {
        let mut l = LockJournal::default();
        l.wait(4, S(0), "vm1 to h2");
        assert_eq!(l.pending(), Some(&"vm1 to h2"));
        assert_eq!(l.saved(3, Ok(())), None, "the removal of an earlier lock");
        assert_eq!(l.saved(4, Ok(())), Some(LockOutcome::Begin("vm1 to h2")));
        assert_eq!(l.pending(), None);
    }

    #[test]
    fn a_lock_not_written_or_not_in_time_calls_the_migration_off() {
        let mut l = LockJournal::default();
        l.wait(1, S(0), "vm1");
        let Some(LockOutcome::CallOff("vm1", why)) = l.saved(1, Err("disk full".into())) else {
            panic!("called off");
        };
        assert!(why.contains("disk full"), "{why}");
        l.wait(2, S(100), "vm2");
        assert_eq!(l.overdue(S(109), "lock.json"), None);
        let Some(LockOutcome::CallOff("vm2", why)) = l.overdue(S(110), "lock.json") else {
            panic!("called off");
        };
        assert!(why.contains("lock.json within 10 s"), "{why}");
        assert_eq!(l.saved(2, Ok(())), None, "settled already");
    }
}
