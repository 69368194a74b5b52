//! A socket's typed extensions: per-socket values of any type, one per type.

use std::any::{Any, TypeId};
use std::collections::HashMap;

/// Per-socket values, by type.
pub(crate) type Extensions = HashMap<TypeId, Box<dyn Any + Send + Sync>>;
