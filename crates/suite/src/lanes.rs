//! Turns probe timelines into the report's timeline lanes.

use probe::{End, EventKind, Timeline};
use report::{Lane, LaneEnd, LaneEvent};

/// A lane for `timeline`, on an axis whose zero is `t0_unix_ms`.
pub fn from_timeline(label: String, timeline: &Timeline, t0_unix_ms: f64) -> Lane {
    let offset = timeline.started_unix_ms - t0_unix_ms;
    let end_at = timeline
        .end
        .as_ref()
        .map(End::at_ms)
        .unwrap_or_else(|| timeline.events.last().map(|e| e.at_ms).unwrap_or(0.0));
    let end = match &timeline.end {
        Some(End::Closed { code, .. }) => LaneEnd::Closed {
            code: code.unwrap_or(1005),
        },
        Some(End::Abnormal { error, .. }) => LaneEnd::Abnormal { error: error.clone() },
        Some(End::HandshakeFailed { status, .. }) => LaneEnd::HandshakeFailed {
            status: status.unwrap_or(0),
        },
        Some(End::StillOpen { .. }) | None => LaneEnd::Open,
    };
    let events = timeline
        .events
        .iter()
        .filter_map(|e| {
            let label = match &e.kind {
                EventKind::Message { direction, len, .. } => format!("{direction:?} message, {len} bytes"),
                EventKind::Ping { direction, .. } => format!("{direction:?} ping"),
                _ => return None,
            };
            Some(LaneEvent {
                at_ms: offset + e.at_ms,
                label,
            })
        })
        .collect();
    Lane {
        label,
        pod: timeline.hello.as_ref().map(|h| h.pod.clone()),
        start_ms: offset.max(0.0),
        end_ms: offset + end_at,
        end,
        events,
    }
}
