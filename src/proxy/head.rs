//! The request and response heads the proxy's phases read and edit: `http`'s own parts, as hyper
//! parses and writes them. Header case the client or upstream used travels beside them in the
//! extensions (hyper's `preserve_header_case`), so a header tollgate leaves alone keeps it.

pub type RequestHead = http::request::Parts;
pub type ResponseHead = http::response::Parts;

/// A request head for tests: `method`, `uri` and headers in order.
#[cfg(test)]
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHead {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("a valid test request").into_parts().0
}

/// A response head for tests: `status` and headers in order.
#[cfg(test)]
pub fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("a valid test response").into_parts().0
}
