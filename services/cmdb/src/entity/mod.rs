//! sea-orm entities of the CMDB's tables.

pub mod ci_history;
pub mod ci_label;
pub mod configuration_item;
