//! A line on an agent's admin socket (`admin::Request`, JSON), and an answer line as
//! hvctl reads it (`admin::Response`): parsing never panics, and a parsed request
//! writes and parses back to itself.

#![no_main]

use hvcluster_common::admin::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = serde_json::from_str::<Request>(line) {
        let _ = request.is_guest_command();
        let again = serde_json::to_string(&request).expect("a request writes");
        let back: Request = serde_json::from_str(&again).expect("a written request parses");
        assert_eq!(back, request);
    }
    if let Ok(response) = serde_json::from_str::<Response>(line) {
        let again = serde_json::to_string(&response).expect("an answer writes");
        let _: Response = serde_json::from_str(&again).expect("a written answer parses");
    }
});
