package daemon

import "github.com/aupguard/aupguard/gateway"

// services builds the decision observers (events, metrics) and the extra
// listeners (admin, unsubscribe) the config asks for.
func services(d *Daemon) ([]gateway.Observer, []Service, error) { return nil, nil, nil }

// closeObservers flushes the observers at shutdown.
func closeObservers(d *Daemon) {}
