package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/aupguard/aupguard/internal/observability/admin"
)

func init() {
	register("admin-token", "create the admin API token (admin.token_file, mode 0600); the token is never printed", runAdminToken)
}

// runAdminToken writes a new random admin token to the config's
// admin.token_file (or -out). An existing token is kept unless -force: the
// clients using it (Prometheus, scripts, the console's password manager)
// would all stop working.
func runAdminToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("admin-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/aupguard/aupguard.yaml", "config file (its admin.token_file is written)")
	out := fs.String("out", "", "write the token to this file instead of admin.token_file")
	force := fs.Bool("force", false, "replace an existing token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	file := *out
	if file == "" {
		cfg, ok := loadConfig(*path, stderr)
		if !ok {
			return 1
		}
		if file = cfg.Admin.TokenFile; file == "" {
			fmt.Fprintf(stderr, "aupguard admin-token: %s has no admin.token_file: set it (e.g. /etc/aupguard/admin.token) or give -out FILE\n", *path)
			return 2
		}
	}
	created, err := admin.WriteToken(file, *force)
	if err != nil {
		fmt.Fprintf(stderr, "aupguard admin-token: %v\n", err)
		return 1
	}
	if !created {
		fmt.Fprintf(stdout, "admin token %s exists: kept (-force replaces it)\n", file)
		return 0
	}
	fmt.Fprintf(stdout, "admin token written to %s (mode 0600): the console's password, and the bearer token of the admin API and /metrics (curl -H \"Authorization: Bearer $(cat %s)\" ...)\n", file, file)
	return 0
}
