use std::sync::Arc;

use invite_core::{
    ActorId, EmailAddress, Invitation, MailKind, ManualClock, NewInvitation, Role, TenantId,
};
use secrecy::SecretString;
use time::macros::{datetime, offset};

use super::*;

const NOW: OffsetDateTime = datetime!(2030-11-22 9:00 UTC);

fn invitation(message: Option<&str>) -> Invitation {
    let mut new = NewInvitation::new(
        EmailAddress::parse("ann@example.com").unwrap(),
        Role::new("contractor").unwrap(),
    )
    .with_names(Some("Ann".into()), Some("Lee".into()));
    if let Some(m) = message {
        new = new.with_message(m);
    }
    let created = Invitation::create(
        TenantId::new("acme").unwrap(),
        new,
        Duration::days(7),
        ActorId::new("alice").unwrap(),
        None,
        NOW,
    );
    created.send(NOW).unwrap().0
}

fn templates() -> Templates {
    let acme = TenantId::new("acme").unwrap();
    Templates::new()
        .with_clock(Arc::new(ManualClock::new(NOW)))
        .with_directory(Arc::new(
            StaticDirectory::new()
                .tenant(acme.clone(), "Acme Corp")
                .actor(acme.clone(), ActorId::new("alice").unwrap(), "Alice Martin")
                .role(acme, Role::new("contractor").unwrap(), "Contractor"),
        ))
}

fn compose(templates: &Templates, inv: &Invitation, kind: MailKind) -> ComposedEmail {
    let link = SecretString::from("https://app.example.com/t/acme/invite/TOKEN");
    let expires_at = inv.expires_at.unwrap();
    templates
        .compose(&MessageContext {
            invitation: inv,
            kind,
            link: &link,
            expires_at,
        })
        .unwrap()
}

#[test]
fn defaults_render_every_documented_value() {
    let inv = invitation(Some("Welcome aboard!"));
    let email = compose(&templates(), &inv, MailKind::Invitation);
    assert_eq!(email.subject, "Alice Martin invited you to join Acme Corp");
    let html = email.html.as_ref().unwrap();
    // HTML escaping writes `/` as `&#x2f;`, which browsers read back as `/`.
    assert!(html.contains(
        "href=\"https:&#x2f;&#x2f;app.example.com&#x2f;t&#x2f;acme&#x2f;invite&#x2f;TOKEN\""
    ));
    assert!(
        email
            .text
            .contains("https://app.example.com/t/acme/invite/TOKEN")
    );
    for body in [&email.text, html] {
        assert!(body.contains("Hello Ann Lee,"), "{body}");
        assert!(body.contains("Contractor"));
        assert!(body.contains("Welcome aboard!"));
        assert!(
            body.contains("in 7 days, on 29 November 2030 at 09:00 UTC"),
            "{body}"
        );
    }
    let reminder = compose(&templates(), &inv, MailKind::Reminder);
    assert!(reminder.subject.starts_with("Reminder: "));
    assert!(reminder.text.contains("replaces any earlier one"));
}

#[test]
fn optional_values_disappear_when_absent() {
    let mut inv = invitation(None);
    inv.names = invite_core::Names::default();
    let email = compose(&templates(), &inv, MailKind::Invitation);
    assert!(email.text.starts_with("Hello,\n"), "{}", email.text);
    assert!(!email.text.contains("Message from"));
    assert!(!email.html.unwrap().contains("border-left:3px"));
}

#[test]
fn html_escapes_values_and_text_does_not() {
    let inv = invitation(Some("<script>alert(1)</script> & co"));
    let email = compose(&templates(), &inv, MailKind::Invitation);
    let html = email.html.unwrap();
    assert!(!html.contains("<script>"));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; co"),
        "{html}"
    );
    assert!(email.text.contains("<script>alert(1)</script> & co"));
}

#[test]
fn subjects_cannot_carry_header_lines() {
    let acme = TenantId::new("acme").unwrap();
    let templates = Templates::new().with_directory(Arc::new(
        StaticDirectory::new().tenant(acme, "Evil\r\nBcc: victim@example.com\n\tx"),
    ));
    let email = compose(&templates, &invitation(None), MailKind::Invitation);
    assert!(!email.subject.contains(['\r', '\n', '\t']));
    assert_eq!(
        email.subject,
        "alice invited you to join Evil Bcc: victim@example.com x"
    );
}

#[test]
fn names_default_to_ids() {
    let email = compose(&Templates::new(), &invitation(None), MailKind::Invitation);
    assert_eq!(email.subject, "alice invited you to join acme");
    assert!(email.text.contains("as contractor."));
}

#[test]
fn unknown_variables_are_refused_with_their_position() {
    let t = templates();
    let mut set = TemplateSet::default_invitation();
    set.text = "Hi,\n\n  {{ accept_link }} {{ user.name }}\n{% if oops %}x{% endif %}".into();
    match t.validate("invitation", &set) {
        Err(TemplateError::UnknownVariable {
            part: Part::Text,
            name,
            line: 3,
            column: 24,
        }) => {
            assert_eq!(name, "user");
        }
        other => panic!("{other:?}"),
    }
    // Attributes and strings named like a variable are not uses of it.
    set.text = "{{ 'user' }} {{ tenant_name.user }} {{ user }}".into();
    assert!(matches!(
        t.validate("invitation", &set),
        Err(TemplateError::UnknownVariable {
            line: 1,
            column: 40,
            ..
        })
    ));
}

#[test]
fn syntax_errors_are_refused_with_line_and_column() {
    let t = templates();
    let mut set = TemplateSet::default_invitation();
    set.html = "<p>\n<p>{{ accept_link }</p>".into();
    match t.validate("invitation", &set) {
        Err(TemplateError::Syntax {
            part: Part::Html,
            line: 2,
            column,
            message,
        }) => {
            assert!(column > 1, "column {column}: {message}");
        }
        other => panic!("{other:?}"),
    }
    set.html = "{% if message %}unclosed".into();
    assert!(matches!(
        t.validate("invitation", &set),
        Err(TemplateError::Syntax { .. })
    ));
}

#[test]
fn runtime_errors_are_refused_when_saved() {
    let t = templates();
    let acme = TenantId::new("acme").unwrap();
    let mut set = TemplateSet::default_invitation();
    set.subject = "{% if message %}{{ message | no_such_filter }}{% endif %}Hi".into();
    let err = t
        .set_tenant_templates(&acme, "invitation", set)
        .unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::Render {
                part: Part::Subject,
                ..
            }
        ),
        "{err}"
    );
    assert!(!t.has_tenant_templates(&acme, "invitation"));
}

#[test]
fn tenant_templates_override_only_their_tenant() {
    let t = templates();
    let acme = TenantId::new("acme").unwrap();
    let mut set = TemplateSet::default_invitation();
    set.subject = "Welcome to {{ tenant_name }}, {{ recipient_email }}".into();
    t.set_tenant_templates(&acme, "invitation", set).unwrap();
    let inv = invitation(None);
    assert_eq!(
        compose(&t, &inv, MailKind::Invitation).subject,
        "Welcome to Acme Corp, ann@example.com"
    );
    // Reminders keep the default; another tenant keeps the default.
    assert!(
        compose(&t, &inv, MailKind::Reminder)
            .subject
            .starts_with("Reminder:")
    );
    let mut other = inv.clone();
    other.tenant = TenantId::new("globex").unwrap();
    assert!(
        compose(&t, &other, MailKind::Invitation)
            .subject
            .ends_with("join globex")
    );
    assert!(t.remove_tenant_templates(&acme, "invitation"));
    assert!(
        compose(&t, &inv, MailKind::Invitation)
            .subject
            .ends_with("join Acme Corp")
    );
}

#[test]
fn host_kinds_declare_their_variables() {
    let t = templates();
    let set = TemplateSet::new(
        "Set your password for {{ tenant_name }}",
        "Open {{ reset_link }}",
        "<a href=\"{{ reset_link }}\">Set password</a>",
    );
    assert!(matches!(
        t.register_kind("set-password", set.clone(), &[]),
        Err(TemplateError::UnknownVariable { .. })
    ));
    assert!(matches!(
        t.register_kind("Set Password", set.clone(), &["reset_link"]),
        Err(TemplateError::InvalidKindName(_))
    ));
    t.register_kind("set-password", set, &["reset_link"])
        .unwrap();
    let acme = TenantId::new("acme").unwrap();
    let vars = Variables::empty()
        .with("tenant_name", Some("Acme".into()))
        .with("reset_link", Some("https://x.test/r?a=1&b=2".into()));
    let email = t.render(&acme, "set-password", &vars).unwrap();
    assert_eq!(email.text, "Open https://x.test/r?a=1&b=2");
    assert_eq!(
        email.html.unwrap(),
        "<a href=\"https:&#x2f;&#x2f;x.test&#x2f;r?a=1&amp;b=2\">Set password</a>"
    );
    // Strict undefined: a missing value is an error, not an empty string.
    let err = t
        .render(&acme, "set-password", &Variables::empty())
        .unwrap_err();
    assert!(matches!(err, TemplateError::Render { .. }), "{err}");
    assert!(matches!(
        t.render(&acme, "nope", &vars),
        Err(TemplateError::UnknownKind(_))
    ));
}

#[test]
fn expiry_reads_in_the_recipients_terms() {
    assert_eq!(humanize(Duration::days(7)).as_deref(), Some("7 days"));
    assert_eq!(
        humanize(Duration::days(7) - Duration::seconds(5)).as_deref(),
        Some("7 days")
    );
    assert_eq!(humanize(Duration::hours(48)).as_deref(), Some("2 days"));
    assert_eq!(humanize(Duration::hours(36)).as_deref(), Some("36 hours"));
    assert_eq!(
        humanize(Duration::minutes(60)).as_deref(),
        Some("60 minutes")
    );
    assert_eq!(humanize(Duration::minutes(1)).as_deref(), Some("1 minute"));
    assert_eq!(humanize(Duration::seconds(-5)), None);
    let at = datetime!(2030-11-29 9:00 UTC);
    assert_eq!(
        format_instant(at, UtcOffset::UTC),
        "29 November 2030 at 09:00 UTC"
    );
    assert_eq!(
        format_instant(at, offset!(+2)),
        "29 November 2030 at 11:00 UTC+02:00"
    );
    assert_eq!(
        format_instant(at, offset!(-9:30)),
        "28 November 2030 at 23:30 UTC-09:30"
    );
    assert_eq!(format_rfc3339(at), "2030-11-29T09:00:00Z");

    let acme = TenantId::new("acme").unwrap();
    let t = Templates::new()
        .with_clock(Arc::new(ManualClock::new(NOW + Duration::hours(12))))
        .with_directory(Arc::new(
            StaticDirectory::new().utc_offset(acme, offset!(+1)),
        ));
    let link = SecretString::from("https://x.test/i/T");
    let inv = invitation(None);
    let vars = t.variables(&MessageContext {
        invitation: &inv,
        kind: MailKind::Invitation,
        link: &link,
        expires_at: inv.expires_at.unwrap(),
    });
    assert_eq!(
        vars.values["expires"].as_deref(),
        Some("in 7 days, on 29 November 2030 at 10:00 UTC+01:00")
    );
    assert!(
        !format!("{vars:?}").contains("x.test/i/T"),
        "Debug hides the link"
    );
}

#[test]
fn too_large_templates_are_refused() {
    let mut set = TemplateSet::default_invitation();
    set.html = "x".repeat(MAX_TEMPLATE_LEN + 1);
    assert!(matches!(
        templates().validate("invitation", &set),
        Err(TemplateError::TooLarge {
            part: Part::Html,
            ..
        })
    ));
}

#[test]
fn subject_cleaning() {
    assert_eq!(clean_subject("  a\r\nb\u{7}c  \n"), "a b c");
    assert_eq!(clean_subject("\n"), "");
}

#[test]
fn composing_renders_exactly_the_documented_variables() {
    // The composer looks variables up without building `Variables`; it must render the
    // same email as `render` with `variables` does, value for value.
    let t = templates();
    let acme = TenantId::new("acme").unwrap();
    let mut set = TemplateSet::default_invitation();
    set.text = VARIABLES
        .iter()
        .map(|v| format!("{v}={{{{ {v} }}}}|{{% if {v} %}}set{{% endif %}}\n"))
        .collect();
    t.set_tenant_templates(&acme, "invitation", set).unwrap();
    let link = SecretString::from("https://app.example.com/t/acme/invite/TOKEN");
    let mut nameless = invitation(Some("   "));
    nameless.names.first = None;
    nameless.names.last = None;
    let mut first_only = invitation(Some("Hi <b>you</b>"));
    first_only.names.last = None;
    for inv in [
        invitation(Some("Welcome!")),
        invitation(None),
        nameless,
        first_only,
    ] {
        for kind in [MailKind::Invitation, MailKind::Reminder] {
            let context = MessageContext {
                invitation: &inv,
                kind,
                link: &link,
                expires_at: inv.expires_at.unwrap(),
            };
            let composed = t.compose(&context).unwrap();
            let rendered = t
                .render(&inv.tenant, kind.as_str(), &t.variables(&context))
                .unwrap();
            assert_eq!(composed.subject, rendered.subject);
            assert_eq!(composed.text, rendered.text);
            assert_eq!(composed.html, rendered.html);
            if kind == MailKind::Invitation {
                assert!(
                    composed
                        .text
                        .contains("accept_link=https://app.example.com/t/acme/invite/TOKEN|set")
                );
                assert!(composed.text.contains("kind=invitation|set"));
            }
        }
    }
    let vars = t.variables(&MessageContext {
        invitation: &invitation(None),
        kind: MailKind::Invitation,
        link: &link,
        expires_at: NOW + Duration::days(7),
    });
    assert_eq!(
        vars.values
            .keys()
            .map(String::as_str)
            .collect::<HashSet<_>>(),
        VARIABLES.iter().copied().collect()
    );
    assert_eq!(vars.values["message"], None);
    assert_eq!(vars.values["recipient_name"].as_deref(), Some("Ann Lee"));
}

#[test]
fn cached_expiry_values_match_a_fresh_computation() {
    let a = datetime!(2030-11-29 9:00 UTC);
    let b = datetime!(2030-11-29 9:01 UTC);
    let cases = [
        (a, UtcOffset::UTC, Duration::days(7)),
        (a, UtcOffset::UTC, Duration::days(7) - Duration::seconds(5)), // same words
        (a, offset!(+2), Duration::days(7)),                           // another offset
        (a, UtcOffset::UTC, Duration::hours(36)),                      // time passed
        (b, UtcOffset::UTC, Duration::hours(36)),                      // another instant
        (b, UtcOffset::UTC, Duration::seconds(-5)),                    // expired
        (a, UtcOffset::UTC, Duration::days(7)),                        // back again
    ];
    for round in 0..2 {
        for (at, offset, left) in cases {
            let cached = expiry_values(at, offset, left);
            let fresh = expiry_values_uncached(at, offset, left);
            assert_eq!(cached, fresh, "round {round}: {at} {offset} {left}");
        }
    }
    let [expires, expires_in, expires_on, expires_at] =
        expiry_values(a, offset!(+2), Duration::hours(36));
    assert_eq!(
        expires.as_str(),
        Some("in 36 hours, on 29 November 2030 at 11:00 UTC+02:00")
    );
    assert_eq!(expires_in.as_str(), Some("36 hours"));
    assert_eq!(
        expires_on.as_str(),
        Some("29 November 2030 at 11:00 UTC+02:00")
    );
    assert_eq!(expires_at.as_str(), Some("2030-11-29T09:00:00Z"));
}

#[test]
fn clean_subjects_are_passed_through_unchanged() {
    // Every string of up to six characters from an alphabet of the cases that matter
    // (space, tab, line breaks, a control, DEL, ASCII, non-ASCII, `~`): the borrowing
    // fast path answers what the full cleaning does.
    const ALPHABET: [char; 9] = [' ', 'a', '\t', '\r', '\n', '\u{7}', '\u{7f}', 'é', '~'];
    let mut text = String::new();
    for len in 0..=6u32 {
        for mut n in 0..ALPHABET.len().pow(len) {
            text.clear();
            for _ in 0..len {
                text.push(ALPHABET[n % ALPHABET.len()]);
                n /= ALPHABET.len();
            }
            let fast = clean_subject(&text);
            assert_eq!(fast, cleaned_subject(&text), "{text:?}");
            if matches!(fast, Cow::Borrowed(_)) {
                assert_eq!(fast, text);
            }
        }
    }
    // The length cap: 250 characters pass as they are, 251 are cut.
    let long = "x".repeat(MAX_HEADER_TEXT);
    assert!(matches!(clean_subject(&long), Cow::Borrowed(_)));
    let longer = "x".repeat(MAX_HEADER_TEXT + 1);
    assert_eq!(clean_subject(&longer), cleaned_subject(&longer));
    assert!(clean_subject(&longer).ends_with('…'));
}

#[test]
fn renders_never_see_half_set_or_half_removed_tenant_templates() {
    // A tenant's override flag and its templates change together: a render racing
    // `set_tenant_templates` / `remove_tenant_templates` gets the tenant's version or
    // the default, never "template not found" (which would fail the send for good),
    // and a set racing a remove never leaves the flag without its templates.
    let t = Arc::new(templates());
    let acme = TenantId::new("acme").unwrap();
    let inv = invitation(None);
    let mut set = TemplateSet::default_invitation();
    set.subject = "Own {{ tenant_name }}".into();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renderer = {
        let (t, inv, stop) = (t.clone(), inv.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut renders = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || renders < 200 {
                let link = SecretString::from("https://app.example.com/accept/x");
                let context = MessageContext {
                    invitation: &inv,
                    kind: MailKind::Invitation,
                    link: &link,
                    expires_at: inv.expires_at.unwrap(),
                };
                t.compose(&context).expect("a render during set/remove");
                renders += 1;
            }
        })
    };
    for _ in 0..400 {
        let setter = {
            let (t, acme, set) = (t.clone(), acme.clone(), set.clone());
            std::thread::spawn(move || t.set_tenant_templates(&acme, "invitation", set).unwrap())
        };
        t.remove_tenant_templates(&acme, "invitation");
        setter.join().unwrap();
        if t.has_tenant_templates(&acme, "invitation") {
            assert_eq!(
                compose(&t, &inv, MailKind::Invitation).subject,
                "Own Acme Corp"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    renderer.join().unwrap();
}

#[test]
fn debug_shows_no_link_and_no_host_variable() {
    let t = templates();
    let link = SecretString::from("https://app.example.com/accept/SECRET-TOKEN");
    let inv = invitation(Some("Welcome"));
    let mut vars = t.variables(&MessageContext {
        invitation: &inv,
        kind: MailKind::Invitation,
        link: &link,
        expires_at: inv.expires_at.unwrap(),
    });
    vars.extra.insert(
        "set_password_link".into(),
        Some("https://app.example.com/pw/ONE-TIME".into()),
    );
    let shown = format!("{vars:?}");
    assert!(
        !shown.contains("SECRET-TOKEN") && !shown.contains("ONE-TIME"),
        "{shown}"
    );
    assert!(
        shown.contains("set_password_link") && shown.contains("Welcome"),
        "{shown}"
    );
}

mod plain_forms {
    use proptest::prelude::*;

    use super::*;

    const BUILTIN_NAMES: [&str; 6] = [
        "default\u{1f}invitation.subject",
        "default\u{1f}invitation.txt",
        "default\u{1f}invitation.html",
        "default\u{1f}reminder.subject",
        "default\u{1f}reminder.txt",
        "default\u{1f}reminder.html",
    ];

    #[test]
    fn every_builtin_template_has_a_plain_form() {
        let templates = Templates::new();
        let engine = read(&templates.engine);
        for name in BUILTIN_NAMES {
            assert!(engine.plain.contains_key(name), "{name}");
        }
    }

    #[test]
    fn a_tenant_template_beyond_the_plain_subset_renders_through_minijinja() {
        let templates = templates();
        let acme = TenantId::new("acme").unwrap();
        let mut set = TemplateSet::default_invitation();
        set.subject = "{{ tenant_name | upper }} invites you".into();
        templates
            .set_tenant_templates(&acme, "invitation", set)
            .unwrap();
        {
            let engine = read(&templates.engine);
            let name = template_name(Some(&acme), "invitation", Part::Subject);
            assert!(!engine.plain.contains_key(&name));
            let text = template_name(Some(&acme), "invitation", Part::Text);
            assert!(engine.plain.contains_key(&text));
        }
        let email = compose(&templates, &invitation(None), MailKind::Invitation);
        assert_eq!(email.subject, "ACME CORP invites you");
        // Removed with the tenant's templates: the defaults' plain forms apply again.
        assert!(templates.remove_tenant_templates(&acme, "invitation"));
        let engine = read(&templates.engine);
        assert!(!engine.plain.keys().any(|name| name.starts_with("tenant")));
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::from(())),
            Just(Value::from("")),
            "\\PC{0,30}".prop_map(Value::from),
            "[<>&\"'/ \r\n{}%#a-z]{0,30}".prop_map(Value::from),
        ]
    }

    proptest! {
        /// Whatever the values, a built-in template's plain form writes what
        /// minijinja writes.
        #[test]
        fn builtin_plain_forms_render_as_minijinja_does(
            values in proptest::collection::vec(value(), VARIABLES.len())
        ) {
            let values: [Value; VARIABLES.len()] = values.try_into().unwrap();
            let templates = Templates::new();
            let engine = read(&templates.engine);
            for name in BUILTIN_NAMES {
                let mut plain = String::new();
                engine.plain[name].render(&values, &mut plain);
                let expected = engine
                    .env
                    .get_template(name)
                    .unwrap()
                    .render(Value::from_object(Builtins(values.clone())))
                    .unwrap();
                prop_assert_eq!(plain, expected, "{}", name);
            }
        }
    }
}

#[test]
fn a_template_cannot_include_another_template_of_any_tenant() {
    let t = templates();
    let (acme, globex) = (
        TenantId::new("acme").unwrap(),
        TenantId::new("globex").unwrap(),
    );
    let mut theirs = TemplateSet::default_invitation();
    theirs.html = "<p>globex secret {{ recipient_email }}</p>".into();
    t.set_tenant_templates(&globex, "invitation", theirs)
        .unwrap();
    // By the environment's own name for globex's template, hidden from validation by
    // `ignore missing` (no such template exists in the environment that validates).
    let mut ours = TemplateSet::default_invitation();
    ours.html =
        "<p>{% include \"tenant\u{1f}globex\u{1f}invitation.html\" ignore missing %}</p>".into();
    t.set_tenant_templates(&acme, "invitation", ours).unwrap();
    let html = compose(&t, &invitation(None), MailKind::Invitation)
        .html
        .unwrap();
    assert!(!html.contains("globex secret"), "{html}");
    // Without `ignore missing` it is refused when saved: no name resolves.
    for tag in [
        "{% include \"x\" %}",
        "{% extends \"x\" %}",
        "{% import \"x\" as m %}",
    ] {
        let mut set = TemplateSet::default_invitation();
        set.html = tag.into();
        assert!(
            t.set_tenant_templates(&acme, "invitation", set).is_err(),
            "{tag}"
        );
    }
}

#[test]
fn a_runaway_template_fails_instead_of_running_for_hours() {
    let t = templates();
    let acme = TenantId::new("acme").unwrap();
    let runaway =
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
    // Refused when saved, if it runs away with the sample values.
    let mut set = TemplateSet::default_invitation();
    set.text = runaway.into();
    assert!(matches!(
        t.set_tenant_templates(&acme, "invitation", set),
        Err(TemplateError::Render { .. })
    ));
    // Saved, when it runs away only for one invitation's message: that email fails
    // for good, quickly, instead of holding a dispatcher's worker for hours.
    let mut set = TemplateSet::default_invitation();
    set.text = format!("{{% if message == \"go\" %}}{runaway}{{% endif %}}ok");
    t.set_tenant_templates(&acme, "invitation", set).unwrap();
    let inv = invitation(Some("go"));
    let link = SecretString::from("https://app.example.com/t/acme/invite/TOKEN");
    let err = t
        .compose(&MessageContext {
            invitation: &inv,
            kind: MailKind::Invitation,
            link: &link,
            expires_at: inv.expires_at.unwrap(),
        })
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert_eq!(
        compose(&t, &invitation(Some("hi")), MailKind::Invitation).text,
        "ok"
    );
}
