//! Identifier generation for the state machines: Mesos-shaped ids from counters and 16-byte
//! UUIDs from a seeded generator.
//!
//! The core never asks the operating system for randomness; the daemon hands it a seed, and the
//! simulator hands it a fixed one, so runs replay exactly. This module does not check ids that
//! arrive from outside; `validate_id` does that.

/// Produces RFC 4122 version-4 shaped UUIDs from a splitmix64 stream.
#[derive(Debug, Clone)]
pub struct UuidGen {
    state: u64,
}

impl UuidGen {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Sixteen bytes with the version and variant bits of a random UUID.
    pub fn next_bytes(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        out[6] = (out[6] & 0x0f) | 0x40;
        out[8] = (out[8] & 0x3f) | 0x80;
        out
    }

    /// The canonical hyphenated text form, used for stream and container ids.
    pub fn next_string(&mut self) -> String {
        format_uuid(&self.next_bytes())
    }
}

/// Formats 16 bytes as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Checks an id the way Mesos does for task, executor, agent and framework ids: non-empty, at
/// most 255 bytes, not `.` or `..`, no control characters and no path separators.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("ID must not be empty".into());
    }
    if id.len() > 255 {
        return Err(format!("ID must not be longer than 255 characters, got {}", id.len()));
    }
    if id == "." || id == ".." {
        return Err(format!("'{id}' is disallowed"));
    }
    if id.chars().any(|c| c.is_control()) {
        return Err(format!("'{}' contains control characters", id.escape_debug()));
    }
    if id.contains('/') || id.contains('\\') {
        return Err(format!("'{id}' contains invalid characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let mut g = UuidGen::new(7);
        let a = g.next_bytes();
        let b = g.next_bytes();
        assert_ne!(a, b);
        assert_eq!(a[6] >> 4, 4);
        assert_eq!(a[8] >> 6, 2);
        assert_eq!(g.next_string().len(), 36);
        assert_eq!(UuidGen::new(7).next_bytes(), a, "same seed, same sequence");
    }

    #[test]
    fn id_validation_table() {
        for (id, ok) in [
            ("task-1", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a\\b", false),
            ("a\nb", false),
            ("ünïcode", true),
        ] {
            assert_eq!(validate_id(id).is_ok(), ok, "{id:?}");
        }
        assert!(validate_id(&"x".repeat(256)).is_err());
    }
}
