//! The route of a path: the path with identifier-like segments (numbers, UUIDs, long hex
//! strings and tokens) templated as `:id`, so that `/api/products/42` and
//! `/api/products/43` are one route in the reports.

/// True when `seg` looks like an identifier: a number, a UUID, a long hex string, or a long
/// token that mixes letters and digits.
fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if b.len() == 36 && uuid::Uuid::try_parse(seg).is_ok() {
        return true;
    }
    let has_digit = b.iter().any(u8::is_ascii_digit);
    if b.len() >= 8 && has_digit && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    b.len() >= 16
        && has_digit
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// The templated route of `path`: identifier-like segments become `:id`.
/// `/api/products/42` → `/api/products/:id`.
pub fn route(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if is_id_segment(seg) { ":id" } else { seg });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/api/products/42"), "/api/products/:id");
        assert_eq!(
            route("/u/0190c9a4-8a0b-7cc2-9d1e-3f4a5b6c7d8e/orders"),
            "/u/:id/orders"
        );
        assert_eq!(route("/blog/hello-world"), "/blog/hello-world");
        assert_eq!(route("/c/deadbeef42"), "/c/:id");
        assert_eq!(route("/"), "/");
    }
}
