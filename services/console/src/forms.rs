//! Forms: the fields a page shows, the errors next to each (from the console's own checks or the
//! service's `google.rpc.BadRequest` field violations), and messages for the top of a form.

use std::collections::BTreeMap;

/// Errors of one submitted form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormErrors {
    /// What is wrong with each field, by the field's form name (a description such as
    /// "is required"; the field's label is put in front when shown).
    pub fields: BTreeMap<String, String>,
    /// Messages for the top of the form (a state that does not allow the action, a violation of
    /// a field the form does not show).
    pub form: Vec<String>,
}

impl FormErrors {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_empty()
    }

    /// Records `description` for `field` (the first one stays when a field has several).
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.fields.entry(field.to_string()).or_insert_with(|| description.into());
    }

    /// A message for the top of the form.
    pub fn add_form(&mut self, message: impl Into<String>) {
        self.form.push(message.into());
    }

    /// The errors of `violations` (field path, description): each on the form field that
    /// `field_for` maps its path to, or at the top of the form when it maps to none.
    pub fn from_violations<'a>(
        violations: impl IntoIterator<Item = (&'a str, &'a str)>,
        field_for: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut errors = Self::default();
        for (path, description) in violations {
            match field_for(path) {
                Some(field) => errors.add(&field, description),
                None => errors.add_form(format!("{path}: {description}")),
            }
        }
        errors
    }
}

/// A message next to a field: `description` as is when it is a sentence of its own (capitalised,
/// or starting with the label), else the label in front ("Summary is required").
pub fn sentence(label: &str, description: &str) -> String {
    let description = description.trim();
    if description.is_empty() {
        return format!("{label} is not valid");
    }
    if description.chars().next().is_some_and(char::is_uppercase) {
        return description.to_string();
    }
    if description.to_lowercase().starts_with(&label.to_lowercase()) {
        let mut chars = description.chars();
        return match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        };
    }
    format!("{label} {description}")
}

/// How a field is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    TextArea,
    Number,
    Date,
    Select,
    Radio,
    Checkbox,
}

/// One answer of a select or radio field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// A field as a template draws it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldView {
    /// The form name it is posted as.
    pub name: String,
    /// The element id (unique on the page; tests find fields by it).
    pub id: String,
    pub label: String,
    pub kind: FieldKind,
    pub value: String,
    /// The message next to the field ("" = none).
    pub error: String,
    pub required: bool,
    pub hint: String,
    pub choices: Vec<Choice>,
    /// Bounds of a number field ("" = none) and the longest text ("" = none).
    pub min: String,
    pub max: String,
    pub max_length: String,
}

impl FieldView {
    /// A field posted as `name`, drawn with element id `id`.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        label: impl Into<String>,
        kind: FieldKind,
    ) -> Self {
        Self {
            name: name.into(),
            id: id.into(),
            label: label.into(),
            kind,
            value: String::new(),
            error: String::new(),
            required: false,
            hint: String::new(),
            choices: Vec::new(),
            min: String::new(),
            max: String::new(),
            max_length: String::new(),
        }
    }

    #[must_use]
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    #[must_use]
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    /// The answers of a select or radio field, `(value, label)`; the one equal to the field's
    /// value (set it first) is selected.
    #[must_use]
    pub fn choices<'a>(mut self, choices: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let current = self.value.clone();
        self.choices = choices
            .into_iter()
            .map(|(value, label)| Choice {
                value: value.to_string(),
                label: label.to_string(),
                selected: value == current,
            })
            .collect();
        self
    }

    #[must_use]
    pub fn bounds(mut self, min: Option<i64>, max: Option<i64>) -> Self {
        self.min = number_text(min);
        self.max = number_text(max);
        self
    }

    #[must_use]
    pub fn max_length(mut self, max: usize) -> Self {
        self.max_length = max.to_string();
        self
    }

    /// Puts the error `errors` has for this field next to it.
    #[must_use]
    pub fn with_errors(mut self, errors: &FormErrors) -> Self {
        if let Some(description) = errors.fields.get(&self.name) {
            self.error = sentence(&self.label, description);
        }
        self
    }

    pub fn has_error(&self) -> bool {
        !self.error.is_empty()
    }

    pub fn has_hint(&self) -> bool {
        !self.hint.is_empty()
    }

    /// Whether the field points at a hint or an error (`aria-describedby`).
    pub fn has_description(&self) -> bool {
        self.has_hint() || self.has_error()
    }

    /// The ids of the hint and the error, for `aria-describedby`.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.has_hint() {
            ids.push(format!("{}-hint", self.id));
        }
        if self.has_error() {
            ids.push(format!("{}-error", self.id));
        }
        ids.join(" ")
    }

    pub fn is_textarea(&self) -> bool {
        self.kind == FieldKind::TextArea
    }

    pub fn is_select(&self) -> bool {
        self.kind == FieldKind::Select
    }

    pub fn is_radio(&self) -> bool {
        self.kind == FieldKind::Radio
    }

    pub fn is_checkbox(&self) -> bool {
        self.kind == FieldKind::Checkbox
    }

    pub fn is_checked(&self) -> bool {
        self.value == "true"
    }

    /// The `type` of an `<input>` field.
    pub fn input_type(&self) -> &'static str {
        match self.kind {
            FieldKind::Number => "number",
            FieldKind::Date => "date",
            _ => "text",
        }
    }

    pub fn has_min(&self) -> bool {
        !self.min.is_empty()
    }

    pub fn has_max(&self) -> bool {
        !self.max.is_empty()
    }

    pub fn has_max_length(&self) -> bool {
        !self.max_length.is_empty()
    }
}

/// `n` as text, "" for none.
fn number_text(n: Option<i64>) -> String {
    match n {
        Some(n) => n.to_string(),
        None => String::new(),
    }
}

/// A form as a template draws it: its fields and the messages for its top.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormView {
    pub fields: Vec<FieldView>,
    pub messages: Vec<String>,
}

impl FormView {
    /// `fields` with the errors of `errors` next to them, and the rest at the top.
    pub fn new(fields: Vec<FieldView>, errors: &FormErrors) -> Self {
        let fields: Vec<FieldView> = fields.into_iter().map(|f| f.with_errors(errors)).collect();
        let mut messages = errors.form.clone();
        for (name, description) in &errors.fields {
            if !fields.iter().any(|f| &f.name == name) {
                messages.push(format!("{name}: {description}"));
            }
        }
        Self { fields, messages }
    }

    pub fn has_messages(&self) -> bool {
        !self.messages.is_empty()
    }
}

/// Impact and urgency as a form posts them: "" (not given) or 1-3.
pub fn level(text: &str) -> Option<i32> {
    match text.trim() {
        "" => Some(0),
        "1" => Some(1),
        "2" => Some(2),
        "3" => Some(3),
        _ => None,
    }
}

/// The choices of an impact or urgency select.
pub const LEVELS: [(&str, &str); 3] = [("1", "High"), ("2", "Medium"), ("3", "Low")];

/// A valid request id from a form, or a new one (a form without one still creates once per
/// submission of the page it came from).
pub fn request_id_of(posted: &str) -> String {
    match uuid::Uuid::parse_str(posted.trim()) {
        Ok(id) => id.to_string(),
        Err(_) => uuid::Uuid::new_v4().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_land_on_their_fields_and_the_rest_on_top() {
        let violations = [
            ("ticket.short_description", "is required"),
            ("ticket.impact", "must be HIGH, MEDIUM or LOW (1-3)"),
            ("request_id", "must be a UUID"),
            ("ticket.short_description", "a second problem"),
        ];
        let errors = FormErrors::from_violations(violations, &|path| {
            path.strip_prefix("ticket.")
                .filter(|f| ["short_description", "impact"].contains(f))
                .map(str::to_string)
        });
        assert_eq!(errors.fields.get("short_description").map(String::as_str), Some("is required"));
        assert_eq!(errors.form, ["request_id: must be a UUID"]);

        let form = FormView::new(
            vec![
                FieldView::new("short_description", "short_description", "Summary", FieldKind::Text),
                FieldView::new("impact", "impact", "Impact", FieldKind::Select),
                FieldView::new("category", "category", "Category", FieldKind::Text),
            ],
            &errors,
        );
        assert_eq!(form.fields[0].error, "Summary is required");
        assert_eq!(form.fields[0].described_by(), "short_description-error");
        assert_eq!(form.fields[1].error, "Impact must be HIGH, MEDIUM or LOW (1-3)");
        assert!(!form.fields[2].has_error() && !form.fields[2].has_description());
        assert_eq!(form.messages, ["request_id: must be a UUID"]);
    }

    #[test]
    fn an_error_for_a_field_the_form_does_not_show_goes_on_top() {
        let mut errors = FormErrors::default();
        errors.add("manager", "is required");
        let form = FormView::new(vec![FieldView::new("a", "a", "A", FieldKind::Text)], &errors);
        assert_eq!(form.messages, ["manager: is required"]);
        assert!(form.has_messages());
    }

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(sentence("Summary", "is required"), "Summary is required");
        assert_eq!(sentence("Laptop model", "Laptop model is required"), "Laptop model is required");
        assert_eq!(sentence("Laptop model", "laptop model is required"), "Laptop model is required");
        assert_eq!(sentence("Impact", "Choose high, medium or low"), "Choose high, medium or low");
        assert_eq!(sentence("Count", ""), "Count is not valid");
    }

    #[test]
    fn choices_select_the_current_value_and_hints_are_described() {
        let field = FieldView::new("impact", "impact", "Impact", FieldKind::Select)
            .value("2")
            .hint("How many people are affected")
            .choices(LEVELS);
        let selected: Vec<bool> = field.choices.iter().map(|c| c.selected).collect();
        assert_eq!(selected, [false, true, false]);
        assert_eq!(field.described_by(), "impact-hint");
        assert_eq!(level(""), Some(0));
        assert_eq!(level(" 3 "), Some(3));
        assert_eq!(level("4"), None);
    }
}
