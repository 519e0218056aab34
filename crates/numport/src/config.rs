//! Reading a role's TOML configuration: absent file → defaults; unknown keys → an error that
//! names them, before anything starts.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("in {}", p.display()))
        }
    }
}
