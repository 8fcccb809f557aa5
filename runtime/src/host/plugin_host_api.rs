//! The host API side of [`PluginHandle`] (docs/protocol.md §3.7): deny-by-default dispatch of
//! the plugin's calls to `log`, `emit_event`, `get_config_value`, `register_hook`, `kv_get` and
//! `kv_put`. A call to anything not granted terminates the plugin, and so does a notification of
//! any but `log` and `emit_event`.

use super::*;

impl PluginHandle {
    pub(super) fn host_call(
        &mut self,
        id: Option<Value>,
        method: &str,
        p: &Value,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Ok(cap) = method.parse::<Capability>() else {
            return self.terminate(
                fx,
                codes::DENIED,
                "denied",
                format!("call to `{method}`, which is not a host API method"),
            );
        };
        if !self.granted.contains(&cap) {
            return self.terminate(
                fx,
                codes::DENIED,
                "denied",
                format!("call to `{method}`, which was not granted"),
            );
        }
        // Only `log` and `emit_event` may be notifications (§3.7): the others are requests, whose
        // answer is the point. Executed unanswered, they swallowed their errors and let a plugin
        // drive host work (a `kv_put` to disk, a `register_hook`) without ever reading its stdin,
        // where the answers it does not read would stop it (`stdin_unread`).
        if id.is_none() && !matches!(cap, Capability::Log | Capability::EmitEvent) {
            return self.terminate(
                fx,
                codes::VIOLATION,
                "notification",
                format!("`{method}` sent as a notification: only `log` and `emit_event` may be"),
            );
        }
        let r = self.serve(cap, p, id.is_some(), now, fx);
        if self.state.is_gone() {
            return;
        }
        if let Some(id) = id {
            let v = match r {
                Ok(v) => response_ok(&id, v),
                Err(e) => response_err(&id, &e),
            };
            // Answers queue for the plugin's stdin; one that calls without reading them would
            // grow that queue (each answer echoes an id of up to a frame) without end.
            if self.outbound.len() > self.unread_cap() {
                let why = format!(
                    "the plugin does not read its stdin: {} bytes of answers to its own calls \
                     are queued",
                    self.outbound.len()
                );
                return self.terminate(fx, codes::VIOLATION, "stdin_unread", why);
            }
            self.send(&v);
        }
    }

    /// Serve one call; `answered`: it is a request (its error reaches the plugin), not a
    /// notification.
    fn serve(
        &mut self,
        cap: Capability,
        p: &Value,
        answered: bool,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<Value, RpcError> {
        match cap {
            Capability::Log | Capability::EmitEvent => {
                if self.tokens == 0 {
                    self.dropped += 1;
                    return Err(RpcError::new(
                        codes::OVERLOADED,
                        "event rate limit exceeded; dropped",
                    ));
                }
                self.tokens -= 1;
                if cap == Capability::Log {
                    let l: msg::Log = params(p)?;
                    let level = match l.level.as_str() {
                        "debug" | "info" | "warn" | "error" => l.level,
                        // A request learns it from the error; a notification has no answer,
                        // so its message is kept, as info, and the runtime says why.
                        other if !answered => {
                            let why = format!(
                                "log level `{other}` is not debug, info, warn or error; \
                                 logged as info"
                            );
                            self.log(fx, "warn", "runtime", why);
                            "info".into()
                        }
                        _ => {
                            return Err(RpcError::new(
                                codes::INVALID_PARAMS,
                                "`level` must be debug, info, warn or error",
                            ))
                        }
                    };
                    self.log(fx, &level, "plugin", l.message);
                } else {
                    let e: msg::EmitEvent = params(p)?;
                    fx.to_agent.push(notification(
                        "event",
                        json!({"plugin": self.name(), "name": e.name, "data": e.data}),
                    ));
                }
                Ok(json!({}))
            }
            Capability::GetConfigValue => {
                let k: msg::Key = params(p)?;
                self.cfg
                    .config
                    .get(&k.key)
                    .map(|v| json!({"value": v}))
                    .ok_or_else(|| {
                        RpcError::new(
                            codes::INVALID_PARAMS,
                            format!("unknown config key `{}`", k.key),
                        )
                    })
            }
            Capability::RegisterHook => {
                let h: msg::RegisterHook = params(p)?;
                if !self.cfg.manifest.manifest().hooks.contains(&h.hook) {
                    self.terminate(
                        fx,
                        codes::DENIED,
                        "denied",
                        format!(
                            "register_hook `{}`, which the manifest does not declare",
                            h.hook
                        ),
                    );
                    return Err(RpcError::new(codes::DENIED, "undeclared hook"));
                }
                // A hook registered after the handshake is announced like the handshake's: a
                // `plugin_state` ready with the new set (serve routes calls by it), once for all
                // those of this read at its end, at most once per `ANNOUNCE_INTERVAL`
                // (`announce_hooks`). A hook registered already changes nothing.
                if self.hooks.insert(h.hook) {
                    self.hooks_unannounced = true;
                }
                Ok(json!({"hooks": self.hooks}))
            }
            Capability::KvGet => {
                let k: msg::Key = params(p)?;
                match self.cfg.kv.get(&k.key) {
                    Ok(v) => Ok(json!({"value": v})),
                    Err(e) => Err(RpcError::new(codes::UNAVAILABLE, e.to_string())),
                }
            }
            Capability::KvPut => {
                let k: msg::KvPut = params(p)?;
                match self.cfg.kv.put_at(&k.key, k.value.as_deref(), now) {
                    Ok(()) => Ok(json!({})),
                    Err(e @ KvError::Budget { retry_after_ms, .. }) => {
                        Err(RpcError::new(codes::OVERLOADED, e.to_string()).with_data(
                            json!({"kind": "kv_write_budget", "retry_after_ms": retry_after_ms}),
                        ))
                    }
                    Err(e @ KvError::Quota(_)) => {
                        Err(RpcError::new(codes::QUOTA_EXCEEDED, e.to_string()))
                    }
                    // With its cause: "cannot persist …" alone hid "stayed locked by another
                    // process …; retry in N ms", which is what the plugin can act on.
                    Err(e) => Err(RpcError::new(
                        codes::UNAVAILABLE,
                        crate::package::verify::error_chain(&e),
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::manifest::Manifest;

    struct Fake;

    impl Child for Fake {
        fn kill(&mut self) {}
        fn has_exited(&mut self) -> bool {
            true
        }
        fn wait(self: Box<Self>) -> Value {
            json!({"fake": true, "cleaned_up": true})
        }
    }

    /// A plugin spamming `kv_put` gets its puts of one second bounded (the audit: thousands of
    /// puts stalled `serve`'s loop); past the budget each is refused at once, `overloaded`.
    #[test]
    fn kv_puts_past_the_write_budget_are_overloaded() {
        let m = Manifest::parse(
            br#"{"name":"p","version":"1.0.0","author":"a","description":"d","entrypoint":"e",
            "requested_capabilities":["kv_get","kv_put"],"hooks":[],"api":1}"#,
        )
        .unwrap()
        .validate(&semver::Version::new(9, 0, 0))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let policy = HostPolicy::default();
        let cfg = PluginConfig {
            manifest: m,
            ceiling: [Capability::KvGet, Capability::KvPut].into(),
            kv: KvStore::open(dir.path(), "p", policy.kv.clone()).unwrap(),
            policy,
            config: BTreeMap::new(),
            health: None,
        };
        let now = Instant::now();
        let mut fx = Effects::default();
        let mut h = PluginHandle::new(cfg, Box::new(Fake), now, &mut fx);
        let hs = r#"{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"p","version":"1.0.0","api":1,"capabilities":["kv_get","kv_put"]}}"#;
        h.on_stdout(format!("{hs}\n").as_bytes(), now, &mut fx);
        assert_eq!(h.state(), State::Ready);
        h.outbound.clear();
        let mut lines = String::new();
        for i in 1..=100 {
            lines.push_str(&format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"kv_put","params":{{"key":"k","value":"{i}"}}}}"#
            ));
            lines.push('\n');
        }
        h.on_stdout(lines.as_bytes(), now, &mut fx);
        let answers: Vec<Value> = String::from_utf8(std::mem::take(&mut h.outbound))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 100);
        let ok = answers.iter().filter(|a| a.get("result").is_some()).count();
        assert_eq!(ok, crate::host::kv::WRITE_BUDGET.puts as usize);
        for a in &answers[ok..] {
            assert_eq!(a["error"]["code"], codes::OVERLOADED, "{a}");
            assert_eq!(a["error"]["data"]["kind"], "kv_write_budget", "{a}");
        }
        assert_eq!(h.state(), State::Ready, "refused, not terminated");

        // A store another process holds locked: `unavailable`, saying so and when to retry
        // (the message was "cannot persist key/value store" alone).
        let held = nix::fcntl::Flock::lock(
            std::fs::File::open(dir.path().join("kv/p.lock")).unwrap(),
            nix::fcntl::FlockArg::LockExclusive,
        )
        .unwrap();
        let later = now + std::time::Duration::from_secs(5);
        let put =
            r#"{"jsonrpc":"2.0","id":200,"method":"kv_put","params":{"key":"k","value":"x"}}"#;
        h.on_stdout(format!("{put}\n").as_bytes(), later, &mut fx);
        let a: Value =
            serde_json::from_slice(std::mem::take(&mut h.outbound).trim_ascii()).unwrap();
        assert_eq!(a["error"]["code"], codes::UNAVAILABLE, "{a}");
        let why = a["error"]["message"].as_str().unwrap();
        assert!(why.contains("stayed locked"), "{a}");
        drop(held);
    }
}
