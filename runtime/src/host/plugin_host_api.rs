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
            // Where it stopped, for the author to know what to change: their manifest, their
            // handshake, or nothing of theirs (the node withheld it).
            let why = if !self.cfg.manifest.requested_capabilities().contains(&cap) {
                "the manifest's requested_capabilities do not list it: add it there (and to the \
                 handshake's capabilities) and pack the plugin again"
            } else if !self.asked.contains(&cap) {
                "the handshake's capabilities do not ask for it: add it there"
            } else {
                "this node withheld it (operator policy, certificate scope or a missing grant; \
                 `stockade policy explain PKG` says which): the plugin must do without it"
            };
            return self.terminate(
                fx,
                codes::DENIED,
                "denied",
                format!("call to `{method}`, which was not granted: {why}"),
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

    /// The plugin's key/value store. A plugin granted `kv_get` or `kv_put` has one (its manifest
    /// requests it: [`crate::host::kv::reachable`]); refused, never opened here, otherwise.
    fn kv(&mut self) -> Result<&mut crate::host::kv::KvStore, RpcError> {
        self.cfg
            .kv
            .as_mut()
            .ok_or_else(|| RpcError::new(codes::DENIED, "no key/value store"))
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
                match self.kv()?.get(&k.key) {
                    Ok(v) => Ok(json!({"value": v})),
                    Err(e) => Err(RpcError::new(codes::UNAVAILABLE, e.to_string())),
                }
            }
            Capability::KvPut => {
                let k: msg::KvPut = params(p)?;
                match self.kv()?.put_at(&k.key, k.value.as_deref(), now) {
                    Ok(()) => Ok(json!({})),
                    Err(e @ KvError::Budget { retry_after_ms, .. }) => {
                        Err(RpcError::new(codes::OVERLOADED, e.to_string()).with_data(
                            json!({"kind": "kv_write_budget", "retry_after_ms": retry_after_ms}),
                        ))
                    }
                    Err(e @ KvError::Quota(_)) => {
                        Err(RpcError::new(codes::QUOTA_EXCEEDED, e.to_string()))
                    }
                    // With its cause ("`p.lock` stayed locked … for 500 ms") and, as data, when
                    // a put may try the lock again.
                    Err(ref e @ KvError::Locked { retry_after_ms, .. }) => Err(RpcError::new(
                        codes::UNAVAILABLE,
                        crate::package::verify::error_chain(e),
                    )
                    .with_data(json!({"kind": "kv_locked", "retry_after_ms": retry_after_ms}))),
                    // With its cause: "cannot persist …" alone hides the OS error.
                    Err(e) => Err(RpcError::new(
                        codes::UNAVAILABLE,
                        crate::package::verify::error_chain(&e),
                    )),
                }
            }
        }
    }
}
