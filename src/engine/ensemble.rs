//! The `ensemble` engine: combines the tags other variants gave one image, under the
//! variant's settings (the algorithms are [`crate::ensemble`]'s). An `llm` merge asks its merge
//! model through that model's own engine and falls back to this one's union.

use crate::config::Model;
use crate::engine::{Capabilities, Engine, EngineError, Identity};
use crate::ensemble::Combine;

/// The factory's entry for `ensemble`.
pub(crate) struct Kind;

impl crate::engine::Maker for Kind {
    fn identify(
        &self,
        model: &Model,
        _ctx: &crate::engine::Context,
        _download: bool,
    ) -> anyhow::Result<Option<Identity>> {
        Ok(Some(identify(model)))
    }

    fn capabilities(&self, _model: &Model) -> Capabilities {
        capabilities()
    }

    fn load(
        &self,
        _model: &Model,
        _identity: &Identity,
        _ctx: &crate::engine::Context,
    ) -> anyhow::Result<std::sync::Arc<dyn Engine>> {
        Ok(std::sync::Arc::new(EnsembleEngine))
    }
}

/// Identified by its settings.
fn identify(model: &Model) -> Identity {
    let spec = serde_json::to_value(&model.ensemble).unwrap_or_default();
    crate::engine::identity_of_spec("ensemble", spec)
}

/// What an ensemble can do.
fn capabilities() -> Capabilities {
    Capabilities {
        combine: true,
        ..Capabilities::default()
    }
}

/// The combining engine (stateless: its settings come with each call).
pub struct EnsembleEngine;

impl Engine for EnsembleEngine {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn kind(&self) -> &'static str {
        "ensemble"
    }

    fn combine(
        &self,
        how: &Combine,
        members: &[Option<Vec<(String, f32)>>],
    ) -> Result<Vec<(String, f32)>, EngineError> {
        crate::ensemble::combine(how, members).map_err(EngineError::Input)
    }
}
