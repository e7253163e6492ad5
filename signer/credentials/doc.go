// Package credentials supplies the credentials package signer signs with:
// the profiles of an OCI config folder and the principals of a machine, a
// function or a pod, each kept fresh by one cache and one background loop.
//
// How credentials flow:
//
//	~/.oci/config ──▶ configFile ──▶ Profile ──▶ fetcher ──▶ cache ──▶ *signer.Credentials
//	 (watched: a      (one entry    (api_key,    (reads       (serves
//	  changed file     a profile;    security_    files, or    without
//	  is read again)   DEFAULT       token,       asks a       blocking,
//	                   merged in)    principal)   service)     refreshes ahead)
//	                                                  ▲
//	IMDS, auth service, OKE proxymux, ──────────────┘  (instance, resource,
//	an identity domain's token exchange                 workload, token-exchange
//	                                                    principals)
//
// A fetcher gets credentials from where they live. The cache in front of
// each returns the current credentials without blocking while they are
// valid and their files unchanged (a stat); the Store's one loop fetches every source
// ahead of its first use and again ahead of expiry, in the background,
// keeps the last good credentials when that fails (retrying with bounded
// backoff), and never runs two fetches of one source at once. Once nothing
// valid is left, the error says what to run.
//
// A Store is what a process opens (Open with Settings): every profile of
// the config by name, the default one possibly answered by a principal, and
// the loop; Close ends it. Which principal a profile or the Settings name
// gets is decided in one place (newFetcher). Time comes from a Clock, so
// tests move it by hand; credentialstest has the test hooks.
package credentials
