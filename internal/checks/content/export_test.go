package content

// Helpers of the in-package tests, for the end-to-end tests of package
// content_test (which imports the gateway, and so cannot be package
// content).
var (
	TestPattern  = testPattern
	TestSigName  = testSigName
	StartClamd   = startClamd
	PlainMsg     = func(body string) Message { return Message(plainMsg(body)) }
	AttachMsg    = func(name string, data []byte) Message { return Message(attachmentMsg(name, data)) }
	ZipOf        = zipOf
	BreakerPause = breakerMinBackoff
	SpamToken    = spamToken
	StartRspamd  = startRspamd
	SubjectMsg   = func(subject, body string) Message { return Message(subjectMsg(subject, body)) }
)

// Message is message, exported for the end-to-end tests.
type Message message

// Raw renders m as a client sends it.
func (m Message) Raw(id int) []byte { return message(m).raw(id) }
