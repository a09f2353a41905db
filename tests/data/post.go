// A Rybbit-like hit from Go's net/http, for tests/capture_requests.py:
// go run post.go URL BODY [USER_AGENT]. Without USER_AGENT, Go's own is sent.
package main

import (
	"net/http"
	"os"
	"strings"
)

func main() {
	request, err := http.NewRequest("POST", os.Args[1], strings.NewReader(os.Args[2]))
	if err != nil {
		os.Exit(2)
	}
	request.Header.Set("Content-Type", "application/json")
	if len(os.Args) > 3 {
		request.Header.Set("User-Agent", os.Args[3])
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		os.Exit(1)
	}
	response.Body.Close()
}
