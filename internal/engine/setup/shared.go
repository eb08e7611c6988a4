package setup

import (
	"context"
	"sync"
)

// Shared keeps the long-lived parts of check families across reloads: a
// factory, called again at every reload, takes its object from here by
// key instead of making a new one, so that what it learnt (the DKIM
// selectors it has seen published) outlives the config. Objects that are
// Runners run in the background from Start until its context ends.
type Shared struct {
	mu      sync.Mutex
	m       map[string]any
	ctx     context.Context
	started bool
}

// Runner is a shared object with background work.
type Runner interface {
	Run(ctx context.Context)
}

// NewShared returns an empty registry.
func NewShared() *Shared { return &Shared{m: map[string]any{}} }

// Get returns the object under key, made by create the first time. A
// Runner made after Start starts at once.
func (s *Shared) Get(key string, create func() any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v
	}
	v := create()
	s.m[key] = v
	if r, ok := v.(Runner); ok && s.started {
		go r.Run(s.ctx)
	}
	return v
}

// Start runs every Runner, present and future, until ctx is done. It
// is called once.
func (s *Shared) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.ctx, s.started = ctx, true
	for _, v := range s.m {
		if r, ok := v.(Runner); ok {
			go r.Run(ctx)
		}
	}
}

// Make is Get for an object whose making can fail: an error is returned
// and nothing is kept, so that the next call tries again.
func (s *Shared) Make(key string, create func() (any, error)) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	v, err := create()
	if err != nil {
		return nil, err
	}
	s.m[key] = v
	if r, ok := v.(Runner); ok && s.started {
		go r.Run(s.ctx)
	}
	return v, nil
}

// Lookup returns the object under key, if one was made.
func (s *Shared) Lookup(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}
