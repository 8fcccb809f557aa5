//! The Sertone HTTP front (network peers' requests, pipelined on one connection) and the HTTP
//! bridge (the plugin's answers), with the Sertone bodies both carry: never panic, every
//! request uses bytes that are there and carries at most the 16 KiB body cap, and an answer's
//! body starts inside what was read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_policy::sertone::{self, Rules};
use stockade_runtime::fuzzing::{bridge_answer_head, front_requests};

fuzz_target!(|data: &[u8]| {
    let (requests, _) = front_requests(data, 8080);
    let mut used = 0;
    let rules = Rules {
        closed: true,
        max_fee: Some(1000),
        fee_destination: None,
    };
    for (n, body) in &requests {
        assert!(*n > 0 && body.len() <= 16 * 1024);
        used += n;
        assert!(used <= data.len());
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            let _ = sertone::pre_request(&v);
            let _ = sertone::post_response(&v);
            for hook in [sertone::PRE_REQUEST, sertone::POST_RESPONSE] {
                let _ = sertone::metadata_only(hook, &v);
                let _ = sertone::check_answer(hook, &v, &rules);
            }
            let _ = sertone::pre_answer(&v, &rules);
            let _ = sertone::post_answer(&v);
        }
    }
    if let Ok(Some((_, body_at, _))) = bridge_answer_head(data) {
        assert!(body_at <= data.len());
    }
});
