//! The one place the host agent calls its hypervisor: every call runs off the async
//! threads (a hypervisor call blocks, and libvirt may hang) and is bounded in time.

use std::sync::Arc;
use std::time::Duration;

use hvcluster_libvirt::Hypervisor;

/// The host's hypervisor, shared by the tasks that call it.
pub type Hv = Arc<dyn Hypervisor>;

/// A call that did not return in time, still running.
pub type Hung<T> = tokio::task::JoinHandle<Result<T, String>>;

/// Runs `f` on `hv` off the async threads and waits at most `limit`: its result, or
/// why there is none.
pub async fn call<T: Send + 'static>(
    hv: &Hv,
    limit: Duration,
    f: impl FnOnce(&dyn Hypervisor) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    call_or_hung(hv, limit, f).await.0
}

/// [`call`], handing back a call that did not return in time, for a caller that must
/// not start another while it runs.
pub async fn call_or_hung<T: Send + 'static>(
    hv: &Hv,
    limit: Duration,
    f: impl FnOnce(&dyn Hypervisor) -> Result<T, String> + Send + 'static,
) -> (Result<T, String>, Option<Hung<T>>) {
    let hv = hv.clone();
    let mut run = tokio::task::spawn_blocking(move || f(hv.as_ref()));
    match tokio::time::timeout(limit, &mut run).await {
        Ok(Ok(result)) => (result, None),
        Ok(Err(e)) => (Err(format!("libvirt call failed: {e}")), None),
        Err(_) => (
            Err(format!("libvirt did not answer within {}", seconds(limit))),
            Some(run),
        ),
    }
}

/// `limit` as operators read it: `30 s`, or `1.5 s`.
fn seconds(limit: Duration) -> String {
    if limit.subsec_millis() == 0 {
        format!("{} s", limit.as_secs())
    } else {
        format!("{:.1} s", limit.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use hvcluster_libvirt::fake::{FakeHypervisor, Fault};
    use hvcluster_libvirt::Destroyed;

    use super::*;

    #[tokio::test]
    async fn a_hung_hypervisor_holds_no_caller_past_the_limit() {
        let fake = Arc::new(FakeHypervisor::default());
        fake.define("vm1", 1024, true);
        fake.set_fault(Fault::Hang);
        let hv: Hv = fake.clone();
        let began = std::time::Instant::now();
        let (result, hung) =
            call_or_hung(&hv, Duration::from_millis(200), |h| h.destroy("vm1")).await;
        assert_eq!(result, Err("libvirt did not answer within 0.2 s".into()));
        assert!(began.elapsed() < Duration::from_secs(5));
        // The call goes on; once the hypervisor answers, its result is still had.
        fake.set_fault(Fault::None);
        assert_eq!(
            hung.expect("handed back").await.unwrap(),
            Ok(Destroyed::Now)
        );
    }

    #[tokio::test]
    async fn an_answer_and_an_error_come_through() {
        let fake = Arc::new(FakeHypervisor::default());
        fake.define("vm1", 1024, false);
        let hv: Hv = fake.clone();
        let limit = Duration::from_secs(30);
        assert_eq!(call(&hv, limit, |h| h.start("vm1")).await, Ok(()));
        let err = call(&hv, limit, |h| h.start("vm9")).await.unwrap_err();
        assert!(err.contains("no domain \"vm9\""), "{err}");
    }
}
