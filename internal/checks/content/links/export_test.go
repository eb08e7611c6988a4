package links

// NewRawExtractor returns an Extractor written the whole message, header
// included, in chunks (as Extract writes it), for the fuzz target.
func NewRawExtractor(o Options) *Extractor {
	e := NewExtractor(o)
	e.whole = true
	return e
}
