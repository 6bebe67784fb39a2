//! The configuration read back: defaults, TOML, validation.

use super::*;

#[test]
fn defaults_serve_on_localhost_8080() {
    let config = Config::default();
    assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(config.limits.max_message_bytes, 512 * 1024);
    config.validate().unwrap();
}

#[test]
fn toml_overrides_only_what_it_names() {
    let config = Config::from_toml(
        "bind = \"0.0.0.0:9000\"\n[heartbeat]\ninterval_ms = 1000\ntimeout_ms = 3000\n",
    )
    .unwrap();
    assert_eq!(config.bind.to_string(), "0.0.0.0:9000");
    assert_eq!(config.heartbeat.interval_ms, 1000);
    assert_eq!(config.limits, LimitsConfig::default());
}

#[test]
fn history_rules_match_room_patterns_first_match_wins() {
    let config = Config::from_toml(
        "[[history.rules]]\npattern = \"chat:*\"\nsize = 1000\nttl_secs = 86400\n\
         [[history.rules]]\npattern = \"ticker:*\"\nsize = 0\nttl_secs = 0\n",
    )
    .unwrap();
    let rules = config.history.patterns();
    let for_room = |room| rules.first(room).unwrap_or(&config.history.default);
    assert_eq!(for_room("chat:fr").size, 1000);
    assert_eq!(for_room("chat:fr").max_bytes, 1024 * 1024, "unnamed limits default");
    assert_eq!(for_room("ticker:ACME").size, 0);
    assert_eq!(for_room("general").size, 300);
}

#[test]
fn the_configuration_pages_toml_samples_are_valid() {
    let page = include_str!("../../../docs/CONFIGURATION.md");
    let samples: Vec<&str> =
        page.split("```toml\n").skip(1).filter_map(|s| s.split("```").next()).collect();
    assert_eq!(samples.len(), 2, "the permissions sample and the history sample");
    for sample in &samples {
        Config::from_toml(sample).unwrap_or_else(|e| panic!("{e}: {sample}"));
    }
    let history = Config::from_toml(samples[1]).unwrap();
    let rules = history.history.patterns();
    assert_eq!(rules.first("chat:x").map(|l| l.size), Some(1000));
    assert_eq!(rules.first("ticker:x").map(|l| l.size), Some(0));
    let permissions = Config::from_toml(samples[0]).unwrap();
    assert_eq!(permissions.permissions.rooms[0].pattern, "private:*");
}

#[test]
fn redis_is_off_by_default_and_checked_when_on() {
    assert_eq!(Config::default().redis.url, None);
    let config =
        Config::from_toml("[redis]\nurl = \"redis://10.0.0.5:6379/2\"\nprefix = \"prod\"\n")
            .unwrap();
    assert_eq!(config.redis.url.as_deref(), Some("redis://10.0.0.5:6379/2"));
    assert_eq!((config.redis.prefix.as_str(), config.redis.timeout_ms), ("prod", 1_000));
    for bad in [
        "[redis]\nurl = \"http://10.0.0.5\"\n",
        "[redis]\nurl = \"redis://h\"\nprefix = \"\"\n",
        "[redis]\nurl = \"redis://h\"\ntimeout_ms = 0\n",
        "[redis]\nurl = \"redis://h\"\ncoalesce_us = 50001\n",
    ] {
        assert!(matches!(Config::from_toml(bad), Err(ConfigError::Invalid(_))), "{bad}");
    }
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    assert!(matches!(Config::from_toml("bnid = \"x\""), Err(ConfigError::Parse(_))));
    assert!(matches!(
        Config::from_toml("[heartbeat]\ninterval_ms = 5000\ntimeout_ms = 100\n"),
        Err(ConfigError::Invalid(_))
    ));
}

#[test]
fn webhooks_take_https_urls_and_a_pem_of_roots_to_trust() {
    let https = "[hooks.publish]\nurl = \"https://hooks.example/publish\"\n";
    assert!(Config::from_toml(https).is_ok());
    let events = "[hooks.events]\nurl = \"https://hooks.example/events\"\n";
    assert!(Config::from_toml(events).is_ok());
    for bad in [
        "[hooks.publish]\nurl = \"ftp://hooks.example/publish\"\n",
        "[hooks]\nca_pem = \"not a certificate\"\n",
        "[hooks]\nca_pem = \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"\n",
    ] {
        assert!(matches!(Config::from_toml(bad), Err(ConfigError::Invalid(_))), "{bad}");
    }
}

#[test]
fn a_key_set_url_is_https_or_loopback_and_its_intervals_at_least_a_second() {
    let with = |url: &str, interval: u64| {
        let mut config = Config::default();
        config.auth.jwks_url = Some(url.to_owned());
        config.auth.jwks_min_interval_secs = interval;
        config.validate()
    };
    assert!(with("https://idp.example/.well-known/jwks.json", 60).is_ok());
    assert!(with("http://127.0.0.1:8081/jwks.json", 60).is_ok());
    assert!(with("http://localhost/jwks.json", 60).is_ok());
    // Keys fetched in the clear from elsewhere could be anyone's.
    assert!(with("http://idp.example/jwks.json", 60).is_err());
    assert!(with("http://localhost.evil.example/jwks.json", 60).is_err());
    assert!(with("ftp://idp.example/jwks.json", 60).is_err());
    // Every made-up key id would fetch again.
    assert!(with("https://idp.example/jwks.json", 0).is_err());
}
