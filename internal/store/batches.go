package store

import (
	"fmt"
	"io/fs"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/store/batch"
)

// The batch types are package batch's (below the policy engine, which
// hands a stage's batch to the checks); the families name them here.
type (
	// Batch is the store work of one stage of one transaction.
	Batch = batch.Batch
	// Call is one check's part of a batch.
	Call = batch.Call
	// Proc is one kind of store work a family adds to batches.
	Proc = batch.Proc
	// Lua is one family's registered Lua: its procs and scripts.
	Lua = batch.Lua
)

// runner returns the handle's batch runner, made at the first use (a
// handle built by hand in a test has none yet). A nil handle has none: its
// batches are memory batches.
func (h *Handle) runner() *batch.Runner {
	if h == nil {
		return nil
	}
	if r := h.batches.Load(); r != nil {
		return r
	}
	h.batches.CompareAndSwap(nil, batch.NewRunner(h.Client, h.timeout()))
	return h.batches.Load()
}

// NewBatch starts an empty batch on the store.
func (h *Handle) NewBatch() *Batch { return h.runner().NewBatch() }

// RegisterLua registers a family's Lua on the store, at the family's setup
// (its backend's Open): fsys holds the family's .lua files at its root
// (fs.Sub of its embedded lua folder), lib.lua the library shared by its
// procs. It returns the family's procs and scripts; a reload registers the
// same files again and gets the same set back.
func (h *Handle) RegisterLua(family string, fsys fs.FS) (*Lua, error) {
	l, err := batch.ReadLua(family, fsys)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return l, nil
	}
	l, err = h.runner().Register(family, l)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return l, nil
}

// BatchScript returns the batch script of the families registered so far,
// for LoadScripts at start.
func (h *Handle) BatchScript() *redis.Script { return h.runner().Script() }
