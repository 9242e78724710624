//! Which roles may call which RPC — the gateway's authorisation table. Record-level rules (a
//! requester sees only their own tickets, separation of duties on approvals, admin-only deletes)
//! stay in the services.
//!
//! The table is data: per gRPC service, rules naming methods (or all reads, or all writes) and
//! the roles allowed; the first rule that names a method wins, then the reads/writes rule. An
//! `admin` may call everything. A method no rule covers is admin-only, and a test checks that no
//! public method is left to that fallback.

/// Every role a token may carry.
pub const ROLES: &[&str] = &[
    "requester",
    "agent",
    "tier1",
    "tier2",
    "tier3",
    "problem-manager",
    "change-manager",
    "cab-member",
    "release-manager",
    "service-owner",
    "finance",
    "admin",
];

const AGENTS: &[&str] = &["agent", "tier1", "tier2", "tier3"];
const ENGINEERS: &[&str] = &["tier2", "tier3"];
/// Everyone who works in IT service management (not requesters).
const STAFF: &[&str] = &[
    "agent",
    "tier1",
    "tier2",
    "tier3",
    "problem-manager",
    "change-manager",
    "cab-member",
    "release-manager",
    "service-owner",
    "finance",
];

/// Which methods a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// Get*, List*, BatchGet*, Analyze*, Allocate*, Compare*, CanDeploy.
    Reads,
    /// Every method that is not a read.
    Writes,
    Named(&'static [&'static str]),
}

/// Roles allowed to call some methods of a service.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub service: &'static str,
    pub methods: Methods,
    /// Groups of roles; any role in any group is allowed.
    pub roles: &'static [&'static [&'static str]],
}

const fn rule(service: &'static str, methods: Methods, roles: &'static [&'static [&'static str]]) -> Rule {
    Rule { service, methods, roles }
}

const SD: &str = "itsm.servicedesk.v1.ServiceDeskService";
const INC: &str = "itsm.incident.v1.IncidentService";
const PRB: &str = "itsm.incident.v1.ProblemService";
const CHG: &str = "itsm.change.v1.ChangeService";
const RLS: &str = "itsm.change.v1.ReleaseService";
const CMDB: &str = "itsm.cmdb.v1.CmdbService";
const SLM: &str = "itsm.delivery.v1.ServiceLevelService";
const AVL: &str = "itsm.delivery.v1.AvailabilityService";
const CAP: &str = "itsm.delivery.v1.CapacityService";
const CONT: &str = "itsm.delivery.v1.ContinuityService";
const FIN: &str = "itsm.delivery.v1.FinanceService";
const OVERVIEW: &str = "itsm.gateway.v1.OverviewService";
const AUDIT: &str = "itsm.gateway.v1.AuditService";
const KEYS: &str = "itsm.gateway.v1.ApiKeyService";

/// The table. Reading it top to bottom is reading the policy.
pub const RULES: &[Rule] = &[
    // Service desk: requesters raise and follow their own tickets and their timelines, and
    // comment on them (the service limits them to theirs, and to comments: work notes are
    // internal), order from the catalogue and answer surveys; agents work tickets; admins set up
    // groups, rules, webhooks and the catalogue.
    rule(
        SD,
        Methods::Named(&[
            "CreateTicket",
            "GetTicket",
            "ListTickets",
            "ListTicketHistory",
            "AddTicketNote",
            "ListTicketNotes",
            "AnswerSurvey",
            "GetArticle",
            "ListArticles",
            "ListCatalogItems",
            "GetCatalogItem",
            "SubmitRequest",
        ]),
        &[&["requester"], AGENTS],
    ),
    rule(SD, Methods::Named(&["GetServiceDeskReport"]), &[AGENTS, &["service-owner"]]),
    rule(
        SD,
        Methods::Named(&[
            "CreateSupportGroup",
            "UpdateSupportGroup",
            "DeleteSupportGroup",
            "CreateAssignmentRule",
            "DeleteAssignmentRule",
            "CreateWebhook",
            "ListWebhooks",
            "DeleteWebhook",
            "DeleteTicket",
            "CreateCatalogItem",
        ]),
        &[],
    ),
    rule(SD, Methods::Reads, &[AGENTS]),
    rule(SD, Methods::Writes, &[AGENTS]),
    // Incidents: agents and problem managers work them; others read.
    rule(INC, Methods::Named(&["DeleteIncident"]), &[]),
    rule(INC, Methods::Reads, &[AGENTS, &["problem-manager", "change-manager", "service-owner"]]),
    rule(INC, Methods::Writes, &[AGENTS, &["problem-manager"]]),
    // Problems and known errors: problem managers own them; engineers record them; agents read
    // known errors (tier-1 suggestions).
    rule(PRB, Methods::Named(&["RaiseChange", "DeleteProblem", "DeleteKnownError"]), &[&["problem-manager"]]),
    rule(
        PRB,
        Methods::Named(&["ListCandidateProblems"]),
        &[&["problem-manager", "service-owner"], ENGINEERS],
    ),
    rule(PRB, Methods::Reads, &[AGENTS, &["problem-manager", "change-manager", "service-owner"]]),
    rule(PRB, Methods::Writes, &[&["problem-manager"], ENGINEERS]),
    // Changes: engineers and managers request; the CAB decides; change managers delete.
    rule(
        CHG,
        Methods::Named(&["ApproveChange", "RejectChange", "RecordCabDecision"]),
        &[&["change-manager", "cab-member"]],
    ),
    rule(
        CHG,
        Methods::Named(&[
            "DeleteChange",
            "CreateBlackoutWindow",
            "DeleteBlackoutWindow",
            "CreateMaintenanceWindow",
            "DeleteMaintenanceWindow",
            "UpdateRiskQuestionnaire",
            "UpdateApprovalPolicy",
            "CreateStandardChangeTemplate",
            "DeleteStandardChangeTemplate",
            "CreateCabMeeting",
            "UpdateCabMeeting",
            "ReviewChange",
        ]),
        &[&["change-manager"]],
    ),
    rule(CHG, Methods::Reads, &[STAFF]),
    rule(CHG, Methods::Writes, &[&["change-manager", "release-manager", "problem-manager"], ENGINEERS]),
    // Releases: release managers.
    rule(RLS, Methods::Reads, &[STAFF]),
    rule(RLS, Methods::Writes, &[&["release-manager", "change-manager"]]),
    // CMDB: everyone on staff reads; classes are admin's; CIs change with change and release
    // management (and through imports).
    rule(CMDB, Methods::Named(&["CreateCiClass", "DeleteCiClass"]), &[]),
    rule(CMDB, Methods::Reads, &[STAFF]),
    rule(CMDB, Methods::Writes, &[&["change-manager", "release-manager"]]),
    // Service delivery: service owners; finance owns costs.
    rule(SLM, Methods::Reads, &[AGENTS, &["service-owner"]]),
    rule(SLM, Methods::Writes, &[&["service-owner"]]),
    rule(AVL, Methods::Reads, &[AGENTS, &["service-owner", "problem-manager"]]),
    rule(AVL, Methods::Writes, &[&["service-owner"]]),
    rule(CAP, Methods::Reads, &[&["service-owner"], ENGINEERS]),
    rule(CAP, Methods::Writes, &[&["service-owner"]]),
    rule(CONT, Methods::Reads, &[&["service-owner"]]),
    rule(CONT, Methods::Writes, &[&["service-owner"]]),
    rule(FIN, Methods::Reads, &[&["finance", "service-owner"]]),
    rule(FIN, Methods::Writes, &[&["finance"]]),
    // The audit log: admins only.
    rule(AUDIT, Methods::Reads, &[]),
    // API keys: admins only.
    rule(KEYS, Methods::Reads, &[]),
    rule(KEYS, Methods::Writes, &[]),
    // Composite views: whoever works incidents, services and deployments.
    rule(
        OVERVIEW,
        Methods::Reads,
        &[AGENTS, &["service-owner", "change-manager", "release-manager", "problem-manager"]],
    ),
];

/// Whether a method only reads.
pub fn is_read(method: &str) -> bool {
    ["Get", "List", "BatchGet", "Analyze", "Allocate", "Compare", "Suggest", "Check"]
        .iter()
        .any(|p| method.starts_with(p))
        || method == "CanDeploy"
}

/// The rule that decides `service`/`method`, if any.
pub fn rule_for(service: &str, method: &str) -> Option<&'static Rule> {
    let of_service = || RULES.iter().filter(move |r| r.service == service);
    of_service().find(|r| matches!(r.methods, Methods::Named(names) if names.contains(&method))).or_else(
        || {
            let class = if is_read(method) { Methods::Reads } else { Methods::Writes };
            of_service().find(|r| r.methods == class)
        },
    )
}

/// Whether a caller with `roles` may call `/service/method`. Admins may call everything; a
/// method no rule covers is for admins only.
pub fn allowed(path: &str, roles: &[String]) -> bool {
    if roles.iter().any(|r| r == "admin") {
        return true;
    }
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else { return false };
    rule_for(service, method).is_some_and(|rule| {
        rule.roles.iter().flat_map(|g| g.iter()).any(|r| roles.iter().any(|have| have == r))
    })
}

/// Every public method, from the descriptor set: (service, method).
pub fn public_methods() -> Vec<(String, String)> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(itsm_proto::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for file in set.file {
        let package = file.package().to_string();
        for service in file.service {
            let full = format!("{package}.{}", service.name());
            if !itsm_proto::PUBLIC_SERVICES.iter().any(|(s, _)| *s == full) {
                continue;
            }
            for method in service.method {
                out.push((full.clone(), method.name().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_string()).collect()
    }

    #[test]
    fn every_public_method_has_a_rule() {
        let methods = public_methods();
        assert!(methods.len() > 80, "the descriptor set lists the public methods ({})", methods.len());
        for (service, method) in &methods {
            assert!(rule_for(service, method).is_some(), "no rule for {service}/{method}");
        }
        // Rules name only methods that exist.
        for rule in RULES {
            if let Methods::Named(names) = rule.methods {
                for name in names {
                    assert!(
                        methods.iter().any(|(s, m)| s == rule.service && m == name),
                        "{}/{name} does not exist",
                        rule.service
                    );
                }
            }
            for group in rule.roles {
                for role in *group {
                    assert!(ROLES.contains(role), "unknown role {role}");
                }
            }
        }
    }

    #[test]
    fn examples_of_the_policy() {
        let path = |s: &str, m: &str| format!("/{s}/{m}");
        assert!(allowed(&path(SD, "CreateTicket"), &roles(&["requester"])));
        assert!(!allowed(&path(SD, "EscalateTicket"), &roles(&["requester"])));
        assert!(allowed(&path(SD, "SubmitRequest"), &roles(&["requester"])));
        assert!(allowed(&path(SD, "ListTicketHistory"), &roles(&["requester"])));
        assert!(allowed(&path(SD, "AddTicketNote"), &roles(&["requester"])));
        assert!(allowed(&path(SD, "ListTicketNotes"), &roles(&["requester"])));
        assert!(allowed(&path(SD, "AddTicketNote"), &roles(&["tier1"])));
        assert!(!allowed(&path(SD, "AddTicketNote"), &roles(&["finance"])));
        assert!(!allowed(&path(SD, "CreateCatalogItem"), &roles(&["requester"])));
        assert!(allowed(&path(SD, "EscalateTicket"), &roles(&["tier1"])));
        assert!(!allowed(&path(SD, "CreateSupportGroup"), &roles(&["tier3"])));
        assert!(allowed(&path(SD, "CreateSupportGroup"), &roles(&["admin"])));
        assert!(allowed(&path(CHG, "ApproveChange"), &roles(&["cab-member"])));
        assert!(!allowed(&path(CHG, "ApproveChange"), &roles(&["tier3"])));
        assert!(allowed(&path(CHG, "CreateChange"), &roles(&["tier3"])));
        assert!(allowed(&path(CMDB, "ListConfigurationItems"), &roles(&["finance"])));
        assert!(!allowed(&path(CMDB, "ListConfigurationItems"), &roles(&["requester"])));
        assert!(!allowed(&path(CMDB, "CreateConfigurationItem"), &roles(&["tier2"])));
        assert!(allowed(&path(FIN, "ListCostItems"), &roles(&["finance"])));
        assert!(!allowed(&path(FIN, "ListCostItems"), &roles(&["tier1"])));
        assert!(!allowed(&path(INC, "DeleteIncident"), &roles(&["tier3", "problem-manager"])));
        assert!(!allowed("/itsm.unknown.v1.X/Get", &roles(&["agent"])));
        assert!(!allowed("garbage", &roles(&["agent"])));
        assert!(!allowed(&path(INC, "GetIncident"), &[]));
    }
}
