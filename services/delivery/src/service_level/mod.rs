//! Service level management: business calendars, agreements and the SLA clocks that measure
//! incidents and tickets against them.

pub mod api;
pub mod catalogue;
pub mod convert;
pub mod feed;
pub mod objectives;
pub mod report;
pub mod rules;
pub mod store;
