//! A cookie jar shared by every clone of a probe's options: Set-Cookie in, Cookie out.
//!
//! Deliberately small: cookies are keyed by name only (one host per test),
//! attributes are ignored except `Max-Age=0`/an empty value, which delete.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Cookies by name. Clones share the same jar.
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    cookies: Arc<Mutex<BTreeMap<String, String>>>,
}

impl CookieJar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores one `Set-Cookie` header value; returns the cookie's name when it was understood.
    pub fn store_set_cookie(&self, header: &str) -> Option<String> {
        let mut parts = header.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let value = value.trim().trim_matches('"');
        let expired = parts.any(|attr| {
            attr.split_once('=')
                .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-']))
        });
        let mut jar = self.lock();
        if expired || value.is_empty() {
            jar.remove(name);
        } else {
            jar.insert(name.to_owned(), value.to_owned());
        }
        Some(name.to_owned())
    }

    pub fn set(&self, name: impl Into<String>, value: impl Into<String>) {
        self.lock().insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }

    pub fn remove(&self, name: &str) -> Option<String> {
        self.lock().remove(name)
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// All cookies, by name.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.lock().clone()
    }

    /// The `Cookie` request header value, or `None` when the jar is empty.
    pub fn header_value(&self) -> Option<String> {
        let jar = self.lock();
        if jar.is_empty() {
            return None;
        }
        let pairs: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(pairs.join("; "))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.cookies.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_is_stored_and_sent_back_by_clones() {
        let jar = CookieJar::new();
        let clone = jar.clone();
        assert_eq!(jar.header_value(), None);
        assert_eq!(
            clone.store_set_cookie("route=abc123; Path=/; HttpOnly").as_deref(),
            Some("route")
        );
        clone.store_set_cookie("SERVERID=\"s1\"; Max-Age=3600");
        assert_eq!(jar.get("route").as_deref(), Some("abc123"));
        assert_eq!(jar.header_value().as_deref(), Some("SERVERID=s1; route=abc123"));
    }

    #[test]
    fn expired_or_empty_cookies_are_removed() {
        let jar = CookieJar::new();
        jar.set("a", "1");
        jar.set("b", "2");
        jar.store_set_cookie("a=gone; Max-Age=0");
        jar.store_set_cookie("b=");
        assert!(jar.is_empty());
        assert_eq!(jar.store_set_cookie("no-equals-sign"), None);
    }
}
