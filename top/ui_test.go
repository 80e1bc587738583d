package top

import (
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
)

func press(u *UI, keys ...string) tea.Cmd {
	var cmd tea.Cmd
	for _, k := range keys {
		var msg tea.KeyMsg
		switch k {
		case "enter":
			msg = tea.KeyMsg{Type: tea.KeyEnter}
		case "esc":
			msg = tea.KeyMsg{Type: tea.KeyEsc}
		case "down":
			msg = tea.KeyMsg{Type: tea.KeyDown}
		case "up":
			msg = tea.KeyMsg{Type: tea.KeyUp}
		case "ctrl+c":
			msg = tea.KeyMsg{Type: tea.KeyCtrlC}
		default:
			msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		_, cmd = u.Update(msg)
	}
	return cmd
}

// The keys: grouping asks the data side for another grouping; sorting,
// selection, the detail view and pause change the screen only; q and
// Ctrl-C quit.
func TestTopUIKeys(t *testing.T) {
	m, now := scene(t)
	snap := func(g GroupBy) *Snapshot { feedLive(m, g, now); return m.Snapshot(g, now, Counts{}) }
	var asked []GroupBy
	u := NewUI(View{}, ByProcess, Screen{}, func(g GroupBy) { asked = append(asked, g) })
	u.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	u.Update(SnapshotMsg{snap(ByProcess)})
	if v := u.View(); !strings.Contains(v, ">nginx[300]") {
		t.Fatalf("the first row is not selected:\n%s", v)
	}
	press(u, "down", "enter")
	if v := u.View(); !strings.Contains(v, "RECENT RECORDS of curl[812]") {
		t.Fatalf("down, enter: no records of curl:\n%s", v)
	}
	press(u, "down", "esc", "p")
	// Paused: a new snapshot of the same grouping is not shown.
	later := snap(ByProcess)
	later.Rows = nil
	u.Update(SnapshotMsg{later})
	if v := u.View(); !strings.Contains(v, "PAUSED") || !strings.Contains(v, ">curl[812]") {
		t.Fatalf("paused: the screen changed, or the selection moved:\n%s", v)
	}
	press(u, "g")
	if len(asked) != 1 || asked[0] != ByContainer {
		t.Fatalf("g asked for %v, want container", asked)
	}
	// Paused, the new grouping's snapshot is shown all the same.
	u.Update(SnapshotMsg{snap(ByContainer)})
	if v := u.View(); !strings.Contains(v, "by container") || !strings.Contains(v, ">web") {
		t.Fatalf("by container: %s", v)
	}
	press(u, "p", "5", "s", "s")
	if asked[len(asked)-1] != ByRemote || u.view.Sort != 2 {
		t.Errorf("5 s s: asked %v, sort %d", asked, u.view.Sort)
	}
	if press(u, "x") != nil {
		t.Errorf("an unknown key did something")
	}
	for _, k := range []string{"q", "ctrl+c"} {
		if cmd := press(u, k); cmd == nil || cmd() != tea.Quit() {
			t.Errorf("%s does not quit", k)
		}
	}
}
