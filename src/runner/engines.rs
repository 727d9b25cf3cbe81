//! The engines a run has loaded for its generation step and its judges: each model loaded
//! once, when first needed, and shared by every variant, ensemble and judge that uses it.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::Staged;
use crate::config::Model;
use crate::engine::{self, Context, Engine};

/// Loaded engines by model name.
#[derive(Default)]
pub struct Engines {
    loaded: HashMap<String, Arc<dyn Engine>>,
}

impl Engines {
    /// The engine of `model`, loaded on first use.
    pub fn get(
        &mut self,
        model: &Model,
        staged: &Staged,
        ctx: &Context,
    ) -> Result<Arc<dyn Engine>> {
        if let Some(e) = self.loaded.get(&model.name) {
            return Ok(e.clone());
        }
        let identity = staged
            .identities
            .get(&model.name)
            .with_context(|| format!("model `{}` was not identified", model.name))?;
        let e = engine::load(model, identity, ctx)
            .with_context(|| format!("loading model `{}`", model.name))?;
        self.loaded.insert(model.name.clone(), e.clone());
        Ok(e)
    }
}
