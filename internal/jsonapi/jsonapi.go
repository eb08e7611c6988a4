// Package jsonapi writes the JSON answers of the gateway's HTTP APIs (the
// admin API and the opt-out API), the same way for both.
package jsonapi

import (
	"encoding/json"
	"net/http"
)

// Write answers with v as indented JSON, never cached.
func Write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Error answers {"error": msg} with code.
func Error(w http.ResponseWriter, code int, msg string) {
	Write(w, code, map[string]string{"error": msg})
}
