//! Long-polling style sessions: `POST /session` creates one; only this pod knows it afterwards.

use std::collections::HashSet;
use std::sync::Mutex;

/// Most sessions remembered; beyond it an arbitrary old one is forgotten (bounded memory).
const MAX_SESSIONS: usize = 100_000;

/// The session ids this pod created.
#[derive(Debug, Default)]
pub struct Sessions {
    ids: Mutex<HashSet<String>>,
}

impl Sessions {
    /// Creates a session and returns its id (128 random bits, hex).
    pub fn create(&self) -> String {
        let sid = format!("{:032x}", rand::random::<u128>());
        let mut ids = self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if ids.len() >= MAX_SESSIONS
            && let Some(old) = ids.iter().next().cloned()
        {
            ids.remove(&old);
        }
        ids.insert(sid.clone());
        sid
    }

    /// Whether this pod created `sid`.
    pub fn contains(&self, sid: &str) -> bool {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_sessions_are_known_and_others_are_not() {
        let sessions = Sessions::default();
        let a = sessions.create();
        let b = sessions.create();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(sessions.contains(&a));
        assert!(!sessions.contains("not-a-session"));
    }
}
