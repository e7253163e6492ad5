package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "abc", 0}, {"abc", "abd", 1}, {"abc", "ab", 1}, {"us-chicgao-1", "us-chicago-1", 2}, {"", "abc", 3}} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// No cut leaves half a character, whatever the length asked.
func TestCutKeepsCharactersWhole(t *testing.T) {
	s := strings.Repeat("aé€😀", 20)
	for n := 0; n <= len(s)+1; n++ {
		for _, got := range []string{Cut(s, n), CutCounted(s, n)} {
			if !utf8.ValidString(got) {
				t.Fatalf("cut at %d: %q is not valid UTF-8", n, got)
			}
		}
		if n >= len(s) && (Cut(s, n) != s || CutCounted(s, n) != s) {
			t.Fatalf("cut at %d changed a string that fits", n)
		}
		if c := Cut(s, n); n < len(s) && len(c) > n+len("…") {
			t.Fatalf("cut at %d is %d bytes", n, len(c))
		}
	}
	if got := CutCounted(strings.Repeat("x", 10), 4); got != "xxxx…[10 bytes]" {
		t.Fatalf("%q", got)
	}
}
