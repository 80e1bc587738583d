package top

import (
	tea "github.com/charmbracelet/bubbletea"
)

// SnapshotMsg brings a new snapshot to the UI.
type SnapshotMsg struct{ Snapshot *Snapshot }

// UI is the Bubble Tea model of the full-screen view. It only draws
// snapshots made elsewhere (the tracer's goroutine owns the data) and
// tells that goroutine which grouping to make them of.
type UI struct {
	snap   *Snapshot
	view   View
	screen Screen
	group  GroupBy
	// SetGroup asks for snapshots grouped so from now on.
	setGroup func(GroupBy)
}

// NewUI returns the view, grouped by g at first, drawn on sc (its size
// comes from the terminal).
func NewUI(v View, g GroupBy, sc Screen, setGroup func(GroupBy)) *UI {
	return &UI{view: v, screen: sc, group: g, setGroup: setGroup}
}

// Init starts nothing: snapshots are sent in.
func (u *UI) Init() tea.Cmd { return nil }

// Update handles keys, resizes and snapshots.
func (u *UI) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		u.screen.Width, u.screen.Height = msg.Width, msg.Height
	case SnapshotMsg:
		// Paused: keep the screen, unless it is of another grouping than
		// the one asked for.
		if u.snap == nil || !u.view.Paused || u.snap.Group != u.group && msg.Snapshot.Group == u.group {
			u.snap = msg.Snapshot
		}
	case tea.KeyMsg:
		return u, u.key(msg.String())
	}
	return u, nil
}

func (u *UI) key(k string) tea.Cmd {
	switch k {
	case "q", "ctrl+c":
		return tea.Quit
	case "p", " ":
		u.view.Paused = !u.view.Paused
	case "g", "G":
		step := GroupBy(1)
		if k == "G" {
			step = numGroupBy - 1
		}
		u.regroup((u.group + step) % numGroupBy)
	case "1", "2", "3", "4", "5":
		u.regroup(GroupBy(k[0] - '1'))
	case "s":
		u.view.Sort = (u.view.Sort + 1) % NumSorts()
	case "S":
		u.view.Sort = (u.view.Sort + NumSorts() - 1) % NumSorts()
	case "r":
		u.view.Reverse = !u.view.Reverse
	case "enter", "right", "l":
		if !u.view.Detail {
			u.view.Detail, u.view.Record = true, 0
		}
	case "esc", "backspace", "left", "h":
		u.view.Detail = false
	case "up", "k":
		u.move(-1)
	case "down", "j":
		u.move(1)
	case "pgup":
		u.move(-10)
	case "pgdown":
		u.move(10)
	case "home":
		u.move(-1 << 20)
	case "end":
		u.move(1 << 20)
	}
	return nil
}

func (u *UI) regroup(g GroupBy) {
	if g == u.group {
		return
	}
	u.group = g
	u.view.Selected, u.view.Detail = "", false
	if u.setGroup != nil {
		u.setGroup(g)
	}
}

// move moves the selection: among the records in the detail view, else
// among the rows.
func (u *UI) move(d int) {
	if u.snap == nil {
		return
	}
	rows := u.view.Rows(u.snap)
	if len(rows) == 0 {
		return
	}
	i := u.view.SelectedIndex(rows)
	if u.view.Detail {
		u.view.Record = min(max(u.view.Record+d, 0), max(len(rows[i].Records)-1, 0))
		return
	}
	i = min(max(i+d, 0), len(rows)-1)
	u.view.Selected = rows[i].Key
}

// View draws the screen.
func (u *UI) View() string {
	if u.screen.Width == 0 {
		return ""
	}
	return Render(u.snap, &u.view, &u.screen)
}
