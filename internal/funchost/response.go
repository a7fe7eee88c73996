package funchost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Response is a custom handler's reply to a non-HTTP invocation.
type Response struct {
	// Outputs maps output binding names to values; nil is sent as {}.
	Outputs map[string]any `json:"Outputs"`
	// Logs are lines the host writes to the function's log; nil is sent as [].
	Logs []string `json:"Logs"`
	// ReturnValue is the function's return value; usually nil.
	ReturnValue any `json:"ReturnValue"`
}

// WriteResponse writes resp with status and Content-Type application/json.
//
// Any status other than 2xx makes the host retry the invocation (five times
// for a blob trigger, then the blob is poisoned): reserve it for failures a
// retry can cure.
//
// If Outputs or ReturnValue cannot be encoded — a programming error —
// WriteResponse still sends status, with empty Outputs, a null ReturnValue
// and a log line saying why, so that the outcome the caller chose stands.
// An error writing to w (the host has gone) is ignored: there is no one left
// to tell.
func WriteResponse(w http.ResponseWriter, status int, resp Response) {
	body, err := encodeResponse(resp)
	if err != nil {
		logs := append(append([]string(nil), resp.Logs...), fmt.Sprintf("funchost: cannot encode response: %v", err))
		body, _ = encodeResponse(Response{Logs: logs}) // strings and empty maps always encode
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func encodeResponse(resp Response) ([]byte, error) {
	if resp.Outputs == nil {
		resp.Outputs = map[string]any{}
	}
	if resp.Logs == nil {
		resp.Logs = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // log lines are read by people, not browsers
	if err := enc.Encode(resp); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
