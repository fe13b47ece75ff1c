//! What a terminating ws-echo pod's log says about the steps before it exits.
//!
//! The API shows how a container ended, not when its preStop returned or when
//! SIGTERM arrived. ws-echo logs both ("drain delay over" when `GET /drain`
//! answers; the SIGTERM it receives or, with `--ignore-sigterm`, ignores), and
//! the kubelet stamps every line (`timestamps=true`), so following the log
//! while the pod terminates fills in a termination record's `prestop_done`
//! and `sigterm`.

use std::time::{Duration, SystemTime};

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::api::{Api, LogParams};

/// When the preStop drain ended and when SIGTERM arrived, as far as the log says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminationMarks {
    pub prestop_done: Option<SystemTime>,
    pub sigterm: Option<SystemTime>,
}

impl TerminationMarks {
    /// Notes what one kubelet-stamped line (`<RFC 3339 time> <log line>`) says, if anything;
    /// the first mention of each step counts.
    pub fn observe(&mut self, line: &str) {
        let Some((stamp, text)) = line.split_once(' ') else {
            return;
        };
        let Ok(at) = humantime::parse_rfc3339_weak(stamp) else {
            return;
        };
        if text.contains("drain delay over") {
            self.prestop_done.get_or_insert(at);
        } else if text.contains("SIGTERM") && text.contains("signal") {
            self.sigterm.get_or_insert(at);
        }
    }
}

/// Follows `container`'s log in `pod` until it ends (the container exited) or `limit` passes.
pub(crate) async fn follow(pods: Api<K8sPod>, pod: String, container: &str, limit: Duration) -> TerminationMarks {
    let params = LogParams {
        container: Some(container.to_owned()),
        follow: true,
        timestamps: true,
        // Only what is logged from about now on: this pod has not been asked to stop before.
        since_seconds: Some(1),
        ..LogParams::default()
    };
    let mut marks = TerminationMarks::default();
    let followed = async {
        let stream = match pods.log_stream(&pod, &params).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, pod, "following the pod log");
                return;
            }
        };
        let mut lines = stream.lines();
        while let Some(Ok(line)) = lines.next().await {
            marks.observe(&line);
        }
    };
    let _ = tokio::time::timeout(limit, followed).await;
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stamp: &str) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(stamp).ok()
    }

    #[test]
    fn drain_end_and_sigterm_come_from_json_and_text_lines() {
        let mut marks = TerminationMarks::default();
        for line in [
            r#"2026-11-21T21:30:00.100000000Z {"level":"INFO","message":"upgrade refused","status":503}"#,
            r#"2026-11-21T21:30:03.104512345Z {"level":"INFO","message":"drain delay over","pod":"ws-echo-1"}"#,
            "2026-11-21T21:30:03.201000000Z  INFO ws_echo: signal received signal=\"SIGTERM\"",
            r#"2026-11-21T21:30:09.000000000Z {"level":"INFO","message":"signal received","signal":"SIGTERM"}"#,
        ] {
            marks.observe(line);
        }
        assert_eq!(
            marks,
            TerminationMarks {
                prestop_done: at("2026-11-21T21:30:03.104512345Z"),
                sigterm: at("2026-11-21T21:30:03.201000000Z"),
            }
        );
    }

    #[test]
    fn an_ignored_sigterm_still_marks_its_arrival() {
        let mut marks = TerminationMarks::default();
        marks.observe(r#"2026-11-21T21:30:03.5Z {"message":"ignoring signal (--ignore-sigterm)","signal":"SIGTERM"}"#);
        assert_eq!(marks.sigterm, at("2026-11-21T21:30:03.5Z"));
        assert_eq!(marks.prestop_done, None);
    }

    #[test]
    fn lines_without_a_timestamp_or_a_step_are_ignored() {
        let mut marks = TerminationMarks::default();
        for line in [
            "drain delay over",
            "not-a-time drain delay over",
            "2026-11-21T21:30:03Z listening addr=0.0.0.0:8080",
            "",
        ] {
            marks.observe(line);
        }
        assert_eq!(marks, TerminationMarks::default());
    }
}
