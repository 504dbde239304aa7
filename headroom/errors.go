package headroom

import "errors"

// ErrStatus is returned by Fetch when the server answers with a status
// other than 2xx (404: no headroom endpoint there; 503: the answer was
// asked with ?fail=503 and is not ok).
var ErrStatus = errors.New("non-2xx answer")

// ErrAnswer is returned by Fetch when the body is not a headroom answer:
// not JSON, no schema, or a schema newer than SchemaVersion.
var ErrAnswer = errors.New("not a headroom answer")

// ErrQuery is returned by ParseQuery for a query parameter that is not
// understood.
var ErrQuery = errors.New("bad headroom query")
