// Package policy decides, for a shared gateway, who may sign as which
// profile, for which services and methods, and with which Generative AI
// compartment and project: the caller's identity (what Envoy verified: an
// mTLS peer certificate, a JWT; or what ocisigner verified: a gateway key)
// against the rules of an operator's policy file. It is pure: no Envoy or
// gRPC types, no I/O in Decide; the gateway extracts the Caller from the
// request and applies the Decision.
//
// # The policy file
//
// YAML, one document:
//
//	version: 1
//	rules:
//	  - name: team-a                   # unique; the metric label of its decisions
//	    callers:                       # any one entry matching picks this rule
//	      - spiffe: spiffe://cluster.local/ns/team-a/sa/*
//	      - jwt:
//	          issuer: https://kubernetes.default.svc.cluster.local
//	          subject: system:serviceaccount:team-a:*
//	      - jwt:
//	          issuer: https://token.actions.githubusercontent.com
//	          claims:
//	            repository: octo-org/*
//	            ref: refs/heads/main
//	      - key: team-a-*
//	    profiles: [team-a, team-a-readonly]   # the profiles it may sign as
//	    default_profile: team-a        # when the request names none
//	    services: [genai, "objectstorage.*.oraclecloud.com"]
//	    methods: [GET, POST]           # or ["*"]
//	    genai:                         # set on its Generative AI requests
//	      compartment: ocid1.compartment.oc1..aaaaaaaaexample
//	      project: ocid1.generativeaiproject.oc1.us-chicago-1.amaaaaaaexample
//	  - name: dns-clients
//	    callers:
//	      - dns: "*.build.example.com"
//	    profiles: [builds]             # one profile: it is the default too
//	    services: ["**"]               # every service
//	    methods: [GET]
//
// Rules are tried in order and the first one one of whose callers matches
// the caller decides: later rules are not tried, so what a caller may do is
// always one rule, the one a refusal names. Then the request must be
// granted by that rule: its service (an alias entry, without a dot, grants
// requests addressed by that alias; a host pattern grants requests for a
// matching host; "**" grants all), its method, and its profile (one of
// profiles, or default_profile when it names none; a rule with one profile
// and no default_profile has that one as default). A caller without
// identity gets 401; a caller no rule names, or that its rule does not
// grant the request, 403. A nil *Policy (None) is a gateway without policy:
// everything is allowed as before.
//
// Patterns: "*" is one or more characters within one segment
// of the field (a SPIFFE path segment, a DNS label, a part of a JWT subject
// between '/' or ':'), "**" one or more characters of any kind. A SPIFFE
// trust domain and a JWT issuer are always written out. Names, profiles,
// aliases and methods are literal.
//
// Parsing is strict: unknown or repeated keys, anchors, aliases and tags,
// a second document, a missing required key (name, callers, profiles,
// services, methods; version at the top), a default_profile outside
// profiles, are errors, each a *ParseError with the file, line, column and
// rule. Bounds: MaxPolicyBytes, MaxRules, MaxPatternLen, and limits on the
// entries of each list.
//
// The parser is go.yaml.in/yaml/v3 (the YAML team's continuation of
// gopkg.in/yaml.v3, the module sigs.k8s.io/yaml wraps): its Node API keeps
// each value's line and column, which sigs.k8s.io/yaml's JSON conversion
// loses, and lets the walk refuse what a struct decoder would accept.
//
// # The keys file
//
// A gateway key (GenerateKey; ocisigner keys add NAME) is "ocisk_" and 43
// base64url characters (256 random bits); a client sends it as the OpenAI
// SDK's api_key (Authorization: Bearer) or in an api-key header. The keys
// file holds names and the SHA-256 of each key, one a line; # starts a
// comment. Removing a line revokes the key:
//
//	# ocisigner gateway keys: one "NAME sha256:HEX" a line
//	team-a-chat sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	ci-runner   sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//
// A policy rule names a key by its name (key: team-a-*). Keys.Lookup
// compares hashes in constant time over all keys. A Key never prints: its
// String, Format, LogValue and MarshalText show a mask, and only Reveal
// gives its text.
//
// # Reloading
//
// WatchPolicy and WatchKeys read their file at start and, with Run, poll it
// (stat) at an interval on an injectable Clock. A new version is parsed
// whole and swapped in atomically; one that does not parse keeps the last
// good one and is reported once through WithOnReload and WithLogger.
//
// # Audit and metrics
//
// Caller.Label is the caller for log lines and metadata (bounded, never a
// token or key). Decision.MetricLabel is the bounded label for metrics: a
// rule name or one of three fixed values, whoever calls.
package policy
