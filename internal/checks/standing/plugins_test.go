package standing_test

// The tests run the gateway with its families, as the binary does.
import _ "github.com/aupguard/aupguard/internal/plugins"
