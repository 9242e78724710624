//! sea-orm entities of the CMDB's tables.

pub mod baseline;
pub mod ci_class;
pub mod ci_history;
pub mod ci_label;
pub mod configuration_item;
pub mod relationship;
