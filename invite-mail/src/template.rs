//! Email templates: subject, plain text and HTML per kind of email, with built-in
//! defaults and per-tenant overrides, rendered by `minijinja` with HTML auto-escaping
//! and strict undefined variables.
//!
//! [`Templates`] is a [`Composer`]: plug it into the service with
//! [`InvitationsBuilder::composer`](invite_core::InvitationsBuilder::composer) and every
//! email the dispatcher sends is written from it.
//!
//! # Variables
//!
//! Every template of the built-in kinds (`invitation`, `reminder`) sees exactly these
//! variables; any other name is refused when the template is saved.
//!
//! | variable | example | source |
//! |---|---|---|
//! | `tenant_name` | `Acme Corp` | [`Directory::tenant_name`], else the tenant id |
//! | `tenant_id` | `acme` | the invitation |
//! | `inviter_name` | `Alice Martin` | [`Directory::actor_name`], else the actor id |
//! | `recipient_email` | `ann@example.com` | the invitation |
//! | `recipient_name` | `Ann Lee`, or none | the invitation's names |
//! | `role` | `contractor` | the invitation |
//! | `role_name` | `Contractor` | [`Directory::role_name`], else the role |
//! | `message` | `Welcome aboard!`, or none | the inviter's welcome message |
//! | `accept_link` | `https://app.example.com/t/acme/invite/…` | the link minted at send time |
//! | `expires` | `in 7 days, on 29 November 2030 at 09:00 UTC` | both of the next two |
//! | `expires_in` | `7 days` | time left when the email is written |
//! | `expires_on` | `29 November 2030 at 09:00 UTC` | in [`Directory::utc_offset`] |
//! | `expires_at` | `2030-11-29T09:00:00Z` | RFC 3339, UTC |
//! | `kind` | `invitation` | which email |
//!
//! "None" values are falsy: `{% if message %}…{% endif %}`. Kinds a host registers with
//! [`Templates::register_kind`] see the variables it declares there.
//!
//! # Safety of the output
//!
//! HTML templates (`html`) auto-escape every variable, so a welcome message cannot inject
//! markup. Subjects have CR, LF and other control characters replaced by spaces after
//! rendering, so no value can start a new header line.
//!
//! # Speed
//!
//! Templates that use only text, `{{ name }}` and `{% if name %}…{% else %}…{% endif %}`
//! (the defaults, and most tenants' own) are rendered by the composer from a plain form
//! that copies text and values, about half the composer's cost through minijinja. A
//! plain form is kept only if it renders exactly what minijinja renders for every
//! branch; anything else renders through minijinja, with the same result.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use invite_core::{
    ActorId, Clock, ComposedEmail, Composer, Invitation, MailError, MessageContext, Role,
    SystemClock, TenantId,
};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use secrecy::ExposeSecret;
use time::{Duration, OffsetDateTime, UtcOffset};

/// The variables every built-in kind may use (see the module docs).
pub const VARIABLES: &[&str] = &[
    "tenant_name",
    "tenant_id",
    "inviter_name",
    "recipient_email",
    "recipient_name",
    "role",
    "role_name",
    "message",
    "accept_link",
    "expires",
    "expires_in",
    "expires_on",
    "expires_at",
    "kind",
];

/// Globals of the template language itself, usable in any template.
const LANGUAGE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop", "self"];

/// Largest template source accepted, per part.
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;

/// One part of an email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// The subject line.
    Subject,
    /// The plain-text body.
    Text,
    /// The HTML body.
    Html,
}

impl Part {
    /// Every part, in the order they are checked.
    pub const ALL: [Self; 3] = [Self::Subject, Self::Text, Self::Html];

    /// `subject`, `text` or `html`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Text => "text",
            Self::Html => "html",
        }
    }

    // The suffix decides auto-escaping (see `new_environment`).
    const fn suffix(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Text => "txt",
            Self::Html => "html",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three sources of one kind of email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSet {
    /// Subject line template.
    pub subject: String,
    /// Plain-text body template.
    pub text: String,
    /// HTML body template (auto-escaped).
    pub html: String,
}

impl TemplateSet {
    /// A set from its three sources.
    pub fn new(
        subject: impl Into<String>,
        text: impl Into<String>,
        html: impl Into<String>,
    ) -> Self {
        Self {
            subject: subject.into(),
            text: text.into(),
            html: html.into(),
        }
    }

    /// The built-in `invitation` templates (`templates/invitation.*`).
    pub fn default_invitation() -> Self {
        Self::new(
            include_str!("../templates/invitation.subject"),
            include_str!("../templates/invitation.txt"),
            include_str!("../templates/invitation.html"),
        )
    }

    /// The built-in `reminder` templates (`templates/reminder.*`).
    pub fn default_reminder() -> Self {
        Self::new(
            include_str!("../templates/reminder.subject"),
            include_str!("../templates/reminder.txt"),
            include_str!("../templates/reminder.html"),
        )
    }

    fn part(&self, part: Part) -> &str {
        match part {
            Part::Subject => &self.subject,
            Part::Text => &self.text,
            Part::Html => &self.html,
        }
    }
}

/// Why a template was refused or could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template does not compile.
    #[error("{part} template, line {line}, column {column}: {message}")]
    Syntax {
        /// Which part.
        part: Part,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The template uses a variable that is not in its kind's variable set.
    #[error("{part} template, line {line}, column {column}: unknown variable `{name}`")]
    UnknownVariable {
        /// Which part.
        part: Part,
        /// The variable.
        name: String,
        /// 1-based line of its first use.
        line: usize,
        /// 1-based column of its first use, in characters.
        column: usize,
    },
    /// The template compiled but failed while rendering (an unknown filter, a wrong
    /// type, an undefined attribute).
    #[error("{part} template{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Render {
        /// Which part.
        part: Part,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What the engine said.
        message: String,
    },
    /// A template part is larger than [`MAX_TEMPLATE_LEN`].
    #[error("{part} template is {len} bytes; the limit is {MAX_TEMPLATE_LEN}")]
    TooLarge {
        /// Which part.
        part: Part,
        /// Its size in bytes.
        len: usize,
    },
    /// The subject rendered to nothing.
    #[error("the subject is empty")]
    EmptySubject,
    /// No templates for this kind of email.
    #[error("no templates for the email kind {0:?}")]
    UnknownKind(String),
    /// A kind name must be lowercase ASCII letters, digits, `-` or `_`.
    #[error("invalid email kind name {0:?}: use lowercase letters, digits, '-' or '_'")]
    InvalidKindName(String),
}

impl From<TemplateError> for MailError {
    /// A template that cannot render will not render on retry either: permanent.
    fn from(error: TemplateError) -> Self {
        Self::permanent(error.to_string()).with_source(error)
    }
}

/// The host's names for its ids, used by templates. Every method has a default (the id
/// itself, UTC), so implement only what the host knows.
///
/// [`Composer::compose`] is synchronous, so answer from memory (a cache the host fills);
/// do not block on a database here.
pub trait Directory: fmt::Debug + Send + Sync + 'static {
    /// The tenant's display name (`Acme Corp`); `None` shows the tenant id.
    fn tenant_name(&self, tenant: &TenantId) -> Option<String> {
        let _ = tenant;
        None
    }

    /// The display name of an actor who invited someone; `None` shows the actor id.
    fn actor_name(&self, tenant: &TenantId, actor: &ActorId) -> Option<String> {
        let _ = (tenant, actor);
        None
    }

    /// The display name of a role (`Contractor`); `None` shows the role id.
    fn role_name(&self, tenant: &TenantId, role: &Role) -> Option<String> {
        let _ = (tenant, role);
        None
    }

    /// The offset in which the recipient reads times (the tenant's time zone, say).
    fn utc_offset(&self, invitation: &Invitation) -> UtcOffset {
        let _ = invitation;
        UtcOffset::UTC
    }
}

/// A [`Directory`] filled up front, for hosts with few tenants and for tests.
///
/// ```
/// use invite_core::{ActorId, TenantId};
/// use invite_mail::{Directory, StaticDirectory};
///
/// let acme = TenantId::new("acme")?;
/// let names = StaticDirectory::new()
///     .tenant(acme.clone(), "Acme Corp")
///     .actor(acme.clone(), ActorId::new("alice")?, "Alice Martin");
/// assert_eq!(names.tenant_name(&acme).as_deref(), Some("Acme Corp"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticDirectory {
    tenants: HashMap<TenantId, String>,
    // Per tenant, so that a lookup borrows its keys instead of cloning them.
    actors: HashMap<TenantId, HashMap<ActorId, String>>,
    roles: HashMap<TenantId, HashMap<Role, String>>,
    offsets: HashMap<TenantId, UtcOffset>,
}

impl StaticDirectory {
    /// An empty directory: every name defaults to its id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names a tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: TenantId, name: impl Into<String>) -> Self {
        self.tenants.insert(tenant, name.into());
        self
    }

    /// Names an actor of a tenant.
    #[must_use]
    pub fn actor(mut self, tenant: TenantId, actor: ActorId, name: impl Into<String>) -> Self {
        self.actors
            .entry(tenant)
            .or_default()
            .insert(actor, name.into());
        self
    }

    /// Names a role of a tenant.
    #[must_use]
    pub fn role(mut self, tenant: TenantId, role: Role, name: impl Into<String>) -> Self {
        self.roles
            .entry(tenant)
            .or_default()
            .insert(role, name.into());
        self
    }

    /// Sets the UTC offset a tenant's recipients read times in.
    #[must_use]
    pub fn utc_offset(mut self, tenant: TenantId, offset: UtcOffset) -> Self {
        self.offsets.insert(tenant, offset);
        self
    }
}

impl Directory for StaticDirectory {
    fn tenant_name(&self, tenant: &TenantId) -> Option<String> {
        self.tenants.get(tenant).cloned()
    }

    fn actor_name(&self, tenant: &TenantId, actor: &ActorId) -> Option<String> {
        self.actors.get(tenant)?.get(actor).cloned()
    }

    fn role_name(&self, tenant: &TenantId, role: &Role) -> Option<String> {
        self.roles.get(tenant)?.get(role).cloned()
    }

    fn utc_offset(&self, invitation: &Invitation) -> UtcOffset {
        self.offsets
            .get(&invitation.tenant)
            .copied()
            .unwrap_or(UtcOffset::UTC)
    }
}

/// The values one email is rendered with.
///
/// Built from an invitation by [`Templates::variables`]; hosts rendering their own kinds
/// fill [`extra`](Self::extra) with the variables they declared.
#[derive(Clone, PartialEq, Eq)]
pub struct Variables {
    /// The built-in variables, by name (see the module docs). `None` is a falsy value.
    pub values: BTreeMap<String, Option<String>>,
    /// Variables of a host-registered kind.
    pub extra: BTreeMap<String, Option<String>>,
}

impl fmt::Debug for Variables {
    // `accept_link` holds a live token, and a host kind's variables may too (a
    // set-password link, a one-time code): those are shown by name only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn redacted<'a>((k, v): (&'a String, &Option<String>)) -> (&'a String, Option<&'a str>) {
            (k, v.as_ref().map(|_| "[REDACTED]"))
        }
        f.debug_map()
            .entries(self.values.iter().map(|(k, v)| {
                if k == "accept_link" {
                    redacted((k, v))
                } else {
                    (k, v.as_deref())
                }
            }))
            .entries(self.extra.iter().map(redacted))
            .finish()
    }
}

impl Variables {
    /// An empty set: for host-registered kinds that need none of the built-ins.
    pub fn empty() -> Self {
        Self {
            values: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Sets a variable (built-in or extra), returning the set.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: Option<String>) -> Self {
        let name = name.into();
        if VARIABLES.contains(&name.as_str()) {
            self.values.insert(name, value);
        } else {
            self.extra.insert(name, value);
        }
        self
    }

    fn to_value(&self) -> Value {
        let map: BTreeMap<&str, Value> = self
            .values
            .iter()
            .chain(&self.extra)
            .map(|(k, v)| (k.as_str(), Value::from(v.clone())))
            .collect();
        Value::from(map)
    }

    /// Sample values for validating templates: the same names, plausible values.
    fn sample(names: &HashSet<String>, with_optionals: bool) -> Self {
        let mut vars = Self::empty();
        for name in names {
            let value = match name.as_str() {
                "message" | "recipient_name" if !with_optionals => None,
                "accept_link" => Some("https://app.example.com/t/acme/invite/sample".to_owned()),
                other => Some(format!("sample {other}")),
            };
            vars = vars.with(name.clone(), value);
        }
        vars
    }
}

#[derive(Debug, Clone)]
struct KindSpec {
    variables: HashSet<String>,
}

/// The template registry and renderer; a [`Composer`].
///
/// Built-in kinds `invitation` and `reminder` have professional defaults
/// ([`TemplateSet::default_invitation`]); hosts override them per tenant with
/// [`set_tenant_templates`](Self::set_tenant_templates) (typically when the admin saves
/// the template form, and at startup from the host's own table), and may register more
/// kinds with [`register_kind`](Self::register_kind). Saving validates: a template that
/// does not compile, or names an unknown variable, is refused with its line and column.
///
/// ```
/// use std::sync::Arc;
/// use invite_core::TenantId;
/// use invite_mail::{TemplateError, TemplateSet, Templates};
///
/// let templates = Templates::new();
/// let acme = TenantId::new("acme")?;
/// let mut set = TemplateSet::default_invitation();
/// set.subject = "Join {{ tenant_name }} on Acme Cloud".into();
/// templates.set_tenant_templates(&acme, "invitation", set.clone())?;
///
/// set.subject = "Join {{ tenant_nme }}".into();
/// let err = templates.set_tenant_templates(&acme, "invitation", set).unwrap_err();
/// assert!(matches!(err, TemplateError::UnknownVariable { line: 1, column: 9, .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Templates {
    engine: RwLock<Engine>,
    kinds: RwLock<HashMap<String, KindSpec>>,
    /// The kinds each tenant has its own templates for.
    overrides: RwLock<HashMap<TenantId, HashSet<String>>>,
    directory: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = read(&self.kinds).keys().cloned().collect();
        f.debug_struct("Templates")
            .field("kinds", &kinds)
            .field(
                "tenant_overrides",
                &read(&self.overrides)
                    .values()
                    .map(HashSet::len)
                    .sum::<usize>(),
            )
            .field("directory", &self.directory)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// The minijinja environment, and the plain form ([`plain::Plain`]) of each of its
/// templates that has one, changed together.
struct Engine {
    env: Environment<'static>,
    plain: HashMap<String, plain::Plain>,
}

impl Engine {
    fn new() -> Self {
        Self {
            env: new_environment(),
            plain: HashMap::new(),
        }
    }

    /// Adds (or replaces) a template, with its plain form if it has one (see
    /// [`plain_form`], run before the lock is taken).
    fn add(
        &mut self,
        name: String,
        source: &str,
        part: Part,
        plain: Option<plain::Plain>,
    ) -> Result<(), TemplateError> {
        self.env
            .add_template_owned(name.clone(), source.to_owned())
            .map_err(|e| syntax_error(part, source, &e))?;
        match plain {
            Some(plain) => self.plain.insert(name, plain),
            None => self.plain.remove(&name),
        };
        Ok(())
    }

    fn remove(&mut self, name: &str) {
        self.env.remove_template(name);
        self.plain.remove(name);
    }
}

/// The plain form of a template's `source`, if it has one that renders exactly as
/// minijinja does. Checked in an environment of its own, outside the engine's lock:
/// the check renders the template up to 81 times, which would hold every render back.
fn plain_form(source: &str, part: Part) -> Option<plain::Plain> {
    let plain = plain::Plain::compile(source, part == Part::Html)?;
    let mut env = new_environment();
    // The suffix sets auto-escaping as the engine's name for the template would.
    let name = template_name(None, "check", part);
    env.add_template_owned(name.clone(), source.to_owned())
        .ok()?;
    let template = env.get_template(&name).ok()?;
    plain
        .agrees(|values| template.render(Value::from_object(Builtins(values.clone()))))
        .then_some(plain)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// The name every template name in a template resolves to (see [`new_environment`]).
const NO_TEMPLATE: &str = "\u{0}no other template";

/// The most work one render of one part may do, in minijinja's fuel (about one unit
/// an instruction): the built-in templates take a few hundred, a tenant's long one a
/// few thousand; a loop a tenant wrote to run for hours runs out and is a render error
/// (at save, or a permanent failure of that email), not a stalled dispatcher.
const TEMPLATE_FUEL: u64 = 200_000;

/// The environment every template renders in.
fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Every tenant's templates live in this one environment, so `include`, `import`,
    // `extends` and `from` could name another tenant's: each such name resolves to
    // one no template has (an error, or nothing under `ignore missing`).
    env.set_path_join_callback(|_, _| Cow::Borrowed(NO_TEMPLATE));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_debug(true);
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

fn template_name(tenant: Option<&TenantId>, kind: &str, part: Part) -> String {
    let mut name = String::new();
    push_template_name(&mut name, tenant, kind, part);
    name
}

/// Appends the environment's name for a template to `name`.
fn push_template_name(name: &mut String, tenant: Option<&TenantId>, kind: &str, part: Part) {
    match tenant {
        // A tenant id cannot contain control characters, so this cannot collide.
        Some(tenant) => {
            name.push_str("tenant\u{1f}");
            name.push_str(tenant.as_str());
            name.push('\u{1f}');
        }
        None => name.push_str("default\u{1f}"),
    }
    name.push_str(kind);
    name.push('.');
    name.push_str(part.suffix());
}

fn valid_kind_name(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Templates {
    /// The built-in kinds with their default templates, names defaulting to ids, the
    /// system clock.
    pub fn new() -> Self {
        let builtin: HashSet<String> = VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        let templates = Self {
            engine: RwLock::new(Engine::new()),
            kinds: RwLock::new(HashMap::new()),
            overrides: RwLock::new(HashMap::new()),
            directory: Arc::new(StaticDirectory::new()),
            clock: Arc::new(SystemClock),
        };
        for (kind, set) in [
            ("invitation", TemplateSet::default_invitation()),
            ("reminder", TemplateSet::default_reminder()),
        ] {
            // The defaults are tested to compile; a failure here is a build defect.
            if let Err(e) = templates.install_kind(kind, set, builtin.clone()) {
                unreachable!("built-in {kind} templates are invalid: {e}");
            }
        }
        templates
    }

    /// Where display names and the recipient's UTC offset come from.
    #[must_use]
    pub fn with_directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = directory;
        self
    }

    /// The clock "expires in …" is measured from (use the service's clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The display-name directory.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// Registers a host kind of email (e.g. `set-password`) with its default templates
    /// and the variables its templates may use, in addition to the built-in
    /// [`VARIABLES`]. Replaces an earlier registration of the same kind. Render it with
    /// [`render`](Self::render).
    pub fn register_kind(
        &self,
        kind: &str,
        defaults: TemplateSet,
        extra_variables: &[&str],
    ) -> Result<(), TemplateError> {
        if !valid_kind_name(kind) {
            return Err(TemplateError::InvalidKindName(kind.to_owned()));
        }
        let mut variables: HashSet<String> = VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        variables.extend(extra_variables.iter().map(|v| (*v).to_owned()));
        self.install_kind(kind, defaults, variables)
    }

    fn install_kind(
        &self,
        kind: &str,
        defaults: TemplateSet,
        variables: HashSet<String>,
    ) -> Result<(), TemplateError> {
        let spec = KindSpec { variables };
        validate_set(&spec, &defaults)?;
        let plain = Part::ALL.map(|part| plain_form(defaults.part(part), part));
        let mut engine = write(&self.engine);
        for (part, plain) in Part::ALL.into_iter().zip(plain) {
            engine.add(
                template_name(None, kind, part),
                defaults.part(part),
                part,
                plain,
            )?;
        }
        write(&self.kinds).insert(kind.to_owned(), spec);
        Ok(())
    }

    /// Checks a tenant's templates for `kind` without saving them: each part must compile,
    /// name only the kind's variables and render with sample values.
    pub fn validate(&self, kind: &str, set: &TemplateSet) -> Result<(), TemplateError> {
        let spec = self.spec(kind)?;
        validate_set(&spec, set)
    }

    /// Validates and saves a tenant's templates for `kind`; they replace the defaults
    /// for that tenant from the next email on.
    pub fn set_tenant_templates(
        &self,
        tenant: &TenantId,
        kind: &str,
        set: TemplateSet,
    ) -> Result<(), TemplateError> {
        self.validate(kind, &set)?;
        let plain = Part::ALL.map(|part| plain_form(set.part(part), part));
        let mut engine = write(&self.engine);
        for (part, plain) in Part::ALL.into_iter().zip(plain) {
            engine.add(
                template_name(Some(tenant), kind, part),
                set.part(part),
                part,
                plain,
            )?;
        }
        // Still under the environment's lock: a render sees both or neither.
        write(&self.overrides)
            .entry(tenant.clone())
            .or_default()
            .insert(kind.to_owned());
        drop(engine);
        Ok(())
    }

    /// Drops a tenant's templates for `kind`; the defaults apply again. Returns whether
    /// the tenant had its own.
    pub fn remove_tenant_templates(&self, tenant: &TenantId, kind: &str) -> bool {
        // The environment's lock first and throughout (see `render_value`): a render,
        // or a concurrent `set_tenant_templates`, sees the override and its templates
        // go together.
        let mut engine = write(&self.engine);
        let removed = {
            let mut overrides = write(&self.overrides);
            let removed = overrides
                .get_mut(tenant)
                .is_some_and(|kinds| kinds.remove(kind));
            if overrides.get(tenant).is_some_and(HashSet::is_empty) {
                overrides.remove(tenant);
            }
            removed
        };
        if removed {
            for part in Part::ALL {
                engine.remove(&template_name(Some(tenant), kind, part));
            }
        }
        removed
    }

    /// Whether the tenant has its own templates for `kind`.
    pub fn has_tenant_templates(&self, tenant: &TenantId, kind: &str) -> bool {
        read(&self.overrides)
            .get(tenant)
            .is_some_and(|kinds| kinds.contains(kind))
    }

    fn spec(&self, kind: &str) -> Result<KindSpec, TemplateError> {
        read(&self.kinds)
            .get(kind)
            .cloned()
            .ok_or_else(|| TemplateError::UnknownKind(kind.to_owned()))
    }

    /// The variables of the email for `message`, as the templates see them.
    pub fn variables(&self, message: &MessageContext<'_>) -> Variables {
        let values = self.builtin_values(message);
        Variables {
            values: VARIABLES
                .iter()
                .zip(values)
                .map(|(name, value)| ((*name).to_owned(), value.as_str().map(str::to_owned)))
                .collect(),
            extra: BTreeMap::new(),
        }
    }

    /// The built-in variables of `message`, in [`VARIABLES`] order, as template values
    /// (strings, or none). [`variables`](Self::variables) and the composer both read
    /// them from here.
    fn builtin_values(&self, message: &MessageContext<'_>) -> [Value; VARIABLES.len()] {
        let inv = message.invitation;
        let dir = &self.directory;
        let offset = dir.utc_offset(inv);
        let [expires, expires_in, expires_on, expires_at] = expiry_values(
            message.expires_at,
            offset,
            message.expires_at - self.clock.now(),
        );
        let recipient_name = match (&inv.names.first, &inv.names.last) {
            (Some(f), Some(l)) => Value::from(format!("{f} {l}")),
            (Some(n), None) | (None, Some(n)) => Value::from(n.as_str()),
            (None, None) => Value::from(()),
        };
        let named = |name: Option<String>, id: &str| match name {
            Some(name) => Value::from(name),
            None => Value::from(id),
        };
        // Same order as `VARIABLES`.
        [
            named(dir.tenant_name(&inv.tenant), inv.tenant.as_str()),
            Value::from(inv.tenant.as_str()),
            named(
                dir.actor_name(&inv.tenant, &inv.invited_by),
                inv.invited_by.as_str(),
            ),
            Value::from(inv.email.as_str()),
            recipient_name,
            Value::from(inv.role.as_str()),
            named(dir.role_name(&inv.tenant, &inv.role), inv.role.as_str()),
            Value::from(inv.message.as_deref().filter(|m| !m.trim().is_empty())),
            Value::from(message.link.expose_secret()),
            expires,
            expires_in,
            expires_on,
            expires_at,
            Value::from(message.kind.as_str()),
        ]
    }

    /// Renders the email of `kind` for `tenant` (its own templates, else the defaults).
    /// The subject comes back on one line, control characters replaced by spaces.
    pub fn render(
        &self,
        tenant: &TenantId,
        kind: &str,
        variables: &Variables,
    ) -> Result<ComposedEmail, TemplateError> {
        self.render_value(tenant, kind, &variables.to_value())
    }

    fn render_value(
        &self,
        tenant: &TenantId,
        kind: &str,
        ctx: &Value,
    ) -> Result<ComposedEmail, TemplateError> {
        // Existence only: `spec` would clone the kind's variable set.
        if !read(&self.kinds).contains_key(kind) {
            return Err(TemplateError::UnknownKind(kind.to_owned()));
        }
        // The environment first, then the overrides (the order every method takes
        // them in): setting and removing a tenant's templates change both under the
        // environment's write lock, so the flag read here matches the templates.
        let engine = read(&self.engine);
        let own = self.has_tenant_templates(tenant, kind);
        // The composer's context: its templates' plain forms render from its values.
        let builtins = ctx.downcast_object_ref::<Builtins>();
        let mut name = String::with_capacity(64);
        let mut render = |part: Part| -> Result<String, TemplateError> {
            name.clear();
            push_template_name(&mut name, own.then_some(tenant), kind, part);
            if let Some(Builtins(values)) = builtins
                && let Some(plain) = engine.plain.get(&name)
            {
                let mut out = String::new();
                plain.render(values, &mut out);
                return Ok(out);
            }
            engine
                .env
                .get_template(&name)
                .and_then(|t| t.render(ctx))
                .map_err(|e| render_error(part, &e))
        };
        let subject = into_clean_subject(render(Part::Subject)?);
        if subject.is_empty() {
            return Err(TemplateError::EmptySubject);
        }
        Ok(ComposedEmail {
            subject,
            text: render(Part::Text)?,
            html: Some(render(Part::Html)?),
        })
    }
}

/// The built-in variables as the templates' root: a map looked up by name, without
/// building one (what the composer renders every email with).
#[derive(Debug)]
struct Builtins([Value; VARIABLES.len()]);

impl Object for Builtins {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        let index = VARIABLES.iter().position(|name| *name == key)?;
        Some(self.0[index].clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(VARIABLES)
    }
}

impl Composer for Templates {
    fn compose(&self, message: &MessageContext<'_>) -> Result<ComposedEmail, MailError> {
        let context = Value::from_object(Builtins(self.builtin_values(message)));
        Ok(self.render_value(&message.invitation.tenant, message.kind.as_str(), &context)?)
    }
}

fn render_error(part: Part, error: &minijinja::Error) -> TemplateError {
    TemplateError::Render {
        part,
        line: error.line(),
        message: error
            .detail()
            .map_or_else(|| error.kind().to_string(), str::to_owned),
    }
}

fn syntax_error(part: Part, source: &str, error: &minijinja::Error) -> TemplateError {
    let (line, column) = match error.range() {
        Some(range) => line_column(source, range.start),
        None => (error.line().unwrap_or(1), 1),
    };
    TemplateError::Syntax {
        part,
        line,
        column,
        message: error
            .detail()
            .map_or_else(|| error.kind().to_string(), str::to_owned),
    }
}

fn validate_set(spec: &KindSpec, set: &TemplateSet) -> Result<(), TemplateError> {
    for part in Part::ALL {
        let source = set.part(part);
        if source.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLarge {
                part,
                len: source.len(),
            });
        }
        let mut env = new_environment();
        let name = template_name(None, "check", part);
        env.add_template_owned(name.clone(), source.to_owned())
            .map_err(|e| syntax_error(part, source, &e))?;
        let template = env
            .get_template(&name)
            .map_err(|e| syntax_error(part, source, &e))?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !spec.variables.contains(v) && !LANGUAGE_GLOBALS.contains(&v.as_str()))
            .collect();
        if !unknown.is_empty() {
            // Report the one used first in the source.
            let mut located: Vec<(usize, usize, String)> = unknown
                .drain(..)
                .map(|name| {
                    let (line, column) = find_identifier(source, &name).unwrap_or((1, 1));
                    (line, column, name)
                })
                .collect();
            located.sort();
            let (line, column, name) = located.swap_remove(0);
            return Err(TemplateError::UnknownVariable {
                part,
                name,
                line,
                column,
            });
        }
        // Render with and without the optional values, so a branch on `message` that
        // misuses a filter is caught now rather than at 3 a.m. by the dispatcher.
        for with_optionals in [true, false] {
            let vars = Variables::sample(&spec.variables, with_optionals);
            template
                .render(vars.to_value())
                .map_err(|e| render_error(part, &e))?;
        }
    }
    Ok(())
}

/// 1-based line and character column of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Where `name` is first used as a variable: inside `{{ }}` or `{% %}`, outside string
/// literals, not after a `.` (an attribute). `undeclared_variables` says which names
/// are unknown; this only says where.
fn find_identifier(source: &str, name: &str) -> Option<(usize, usize)> {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let opens = bytes[i] == b'{' && (bytes[i + 1] == b'{' || bytes[i + 1] == b'%');
        if !opens {
            i += 1;
            continue;
        }
        let close: &[u8] = if bytes[i + 1] == b'{' { b"}}" } else { b"%}" };
        i += 2;
        let mut quote: Option<u8> = None;
        let mut previous_significant = b' ';
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(q) = quote {
                if b == b'\\' {
                    i += 2;
                    continue;
                }
                if b == q {
                    quote = None;
                    previous_significant = b;
                }
                i += 1;
                continue;
            }
            if bytes[i..].starts_with(close) {
                i += 2;
                break;
            }
            if b == b'"' || b == b'\'' {
                quote = Some(b);
                i += 1;
                continue;
            }
            if b.is_ascii_alphabetic() || b == b'_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if &source[start..i] == name && previous_significant != b'.' {
                    return Some(line_column(source, start));
                }
                previous_significant = b'a';
                continue;
            }
            if !b.is_ascii_whitespace() {
                previous_significant = b;
            }
            i += 1;
        }
    }
    None
}

/// One line: CR, LF, tabs and other control characters become spaces; runs of spaces
/// collapse; the ends are trimmed; and at most [`MAX_HEADER_TEXT`] characters (an
/// unbroken word cannot be folded, and RFC 5322 caps a line at 998 octets).
///
/// Borrowed when `subject` is one clean line already (the usual case: a composed
/// subject is cleaned here once, then the message writer checks it again).
pub(crate) fn clean_subject(subject: &str) -> Cow<'_, str> {
    if is_clean_subject(subject) {
        return Cow::Borrowed(subject);
    }
    Cow::Owned(cleaned_subject(subject))
}

/// [`clean_subject`] for a subject already owned: kept as it is when clean, or when
/// only line breaks and spaces at its end (the newline a subject template's file
/// ends with) keep it from being clean.
fn into_clean_subject(mut subject: String) -> String {
    let kept = subject.trim_end_matches(['\n', '\r', ' ']).len();
    if is_clean_subject(&subject[..kept]) {
        subject.truncate(kept);
        return subject;
    }
    cleaned_subject(&subject)
}

/// Whether [`clean_subject`] would return `subject` unchanged, without its
/// per-character Unicode checks: printable ASCII, single spaces between words, no
/// space at either end, at most [`MAX_HEADER_TEXT`] characters. (Any other text goes
/// the long way, which gives the same answer for it.)
fn is_clean_subject(subject: &str) -> bool {
    let bytes = subject.as_bytes();
    bytes.len() <= MAX_HEADER_TEXT
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && bytes.iter().all(|b| (b' '..=b'~').contains(b))
        && !bytes.windows(2).any(|pair| pair == b"  ")
}

fn cleaned_subject(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for word in subject
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    cap_header_text(out)
}

/// A recipient's display name as a header (or a provider's JSON) may carry it: a
/// line break (no header holds one, and lettre panics on one in a name) becomes a
/// space, and the name is capped like a subject: an unbroken word cannot be folded
/// under the 998-octet line limit. Core strips line breaks from the names it builds,
/// but `OutgoingEmail` is public.
pub(crate) fn clean_name(name: &str) -> Cow<'_, str> {
    if name.contains(['\r', '\n']) || name.len() > MAX_HEADER_TEXT {
        Cow::Owned(cap_header_text(name.replace(['\r', '\n'], " ")))
    } else {
        Cow::Borrowed(name)
    }
}

/// The most characters a subject or display name keeps in a header.
pub(crate) const MAX_HEADER_TEXT: usize = 250;

/// `text`, cut to [`MAX_HEADER_TEXT`] characters with an ellipsis when longer.
pub(crate) fn cap_header_text(mut text: String) -> String {
    if let Some((cut, last)) = text.char_indices().nth(MAX_HEADER_TEXT - 1)
        && cut + last.len_utf8() < text.len()
    {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// "7 days", "36 hours", "45 minutes"; `None` once the instant has passed.
fn humanize(left: Duration) -> Option<String> {
    humanized(left).map(|(n, unit)| format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
}

/// What [`humanize`] says, as a number and a unit, without the text.
fn humanized(left: Duration) -> Option<(i64, &'static str)> {
    let minutes = left.whole_seconds().checked_add(30)? / 60;
    if minutes <= 0 {
        return None;
    }
    Some(if minutes >= 47 * 60 + 30 {
        ((minutes + 12 * 60) / (24 * 60), "day")
    } else if minutes >= 90 {
        ((minutes + 30) / 60, "hour")
    } else {
        (minutes, "minute")
    })
}

/// The values `expires`, `expires_in`, `expires_on` and `expires_at` for an expiry
/// time seen in `offset` with `left` to go.
fn expiry_values_uncached(at: OffsetDateTime, offset: UtcOffset, left: Duration) -> [Value; 4] {
    let expires_in = humanize(left);
    let expires_on = format_instant(at, offset);
    let expires = match &expires_in {
        Some(left) => format!("in {left}, on {expires_on}"),
        None => format!("on {expires_on}"),
    };
    [
        Value::from(expires),
        Value::from(expires_in.as_deref().unwrap_or("moments")),
        Value::from(expires_on),
        Value::from(format_rfc3339(at)),
    ]
}

/// What the four expiry values depend on: the instant, the reader's offset, and the
/// time left as [`humanize`] words it.
type ExpiryKey = (OffsetDateTime, UtcOffset, Option<(i64, &'static str)>);

thread_local! {
    /// The expiry values last computed on this thread. Invitations created together
    /// (an import, a bulk invite) expire at the same instant, and formatting the four
    /// values costs about a dozen allocations per email; a hit costs four clones of
    /// shared strings.
    static EXPIRY_VALUES: std::cell::RefCell<Option<(ExpiryKey, [Value; 4])>> =
        const { std::cell::RefCell::new(None) };
}

/// [`expiry_values_uncached`], reusing this thread's last result when its key matches.
fn expiry_values(at: OffsetDateTime, offset: UtcOffset, left: Duration) -> [Value; 4] {
    let key = (at, offset, humanized(left));
    EXPIRY_VALUES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((cached, values)) = &*cache
            && *cached == key
        {
            return values.clone();
        }
        let values = expiry_values_uncached(at, offset, left);
        *cache = Some((key, values.clone()));
        values
    })
}

/// "29 November 2030 at 09:00 UTC" in `offset` ("UTC+02:00" when not UTC).
fn format_instant(at: OffsetDateTime, offset: UtcOffset) -> String {
    let local = at.to_offset(offset);
    let zone = if offset.is_utc() {
        "UTC".to_owned()
    } else {
        let (h, m, _) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        format!("UTC{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
    };
    format!(
        "{} {} {} at {:02}:{:02} {zone}",
        local.day(),
        local.month(),
        local.year(),
        local.hour(),
        local.minute()
    )
}

fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

mod plain;
#[cfg(test)]
mod tests;
