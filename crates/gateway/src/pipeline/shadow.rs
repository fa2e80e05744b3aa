//! Shadow routing: a route's `shadow` router decides every request too, off the request
//! path (a blocking task after the served decision), and its decision is logged beside the
//! served one in `shadow.jsonl`, keyed by request id. Nothing it decides is served.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchyard_core::policy::Exclusion;
use switchyard_router::{CandidateSpec, RouteInput};

use super::plan::{Plan, Resolved, Target};
use super::request::ChatView;
use crate::limits::tenants::may_use_model;
use crate::runtime::AppState;
use crate::traffic::{ShadowRecord, now_rfc3339};

/// Starts the shadow decision of a planned request, when its route has a shadow and the
/// log is on.
pub fn spawn(
    state: &Arc<AppState>,
    resolved: &Resolved<'_>,
    view: &ChatView,
    embedding: Option<&[f32]>,
    request_id: &str,
    planned: &Plan,
) {
    let Target::Route(route) = resolved.target else {
        return;
    };
    let (Some(shadow), Some(embedding), Some(decision), Some(log)) = (
        route.shadow.clone(),
        embedding,
        planned.decision.as_ref(),
        state.log.clone(),
    ) else {
        return;
    };
    let specs: Vec<CandidateSpec> = route
        .models
        .iter()
        .filter(|m| may_use_model(resolved.tenant, &m.id))
        .map(|m| m.candidate())
        .collect();
    let unavailable: BTreeSet<String> = decision
        .excluded
        .iter()
        .filter(|(_, e)| **e == Exclusion::Unavailable)
        .map(|(m, _)| m.clone())
        .collect();
    let policy = decision.policy;
    let record = ShadowRecord {
        request_id: request_id.to_owned(),
        time: now_rfc3339(),
        route: route.name.clone(),
        served: decision.chosen.clone(),
        served_version: decision.router_version.clone(),
        decision: None,
        error: None,
    };
    let (embedding, prompt) = (embedding.to_vec(), view.prompt());
    let (input_tokens, max_output_tokens) = (view.input_tokens(), view.max_output_tokens());
    tokio::task::spawn_blocking(move || {
        let routed = shadow.route(&RouteInput {
            embedding: &embedding,
            prompt: &prompt,
            input_tokens,
            max_output_tokens,
            candidates: &specs,
            unavailable,
            policy,
        });
        let record = match routed {
            Ok(r) => ShadowRecord {
                decision: Some(r.decision),
                ..record
            },
            Err(e) => ShadowRecord {
                error: Some(e.to_string()),
                ..record
            },
        };
        log.shadow(&record);
    });
}
