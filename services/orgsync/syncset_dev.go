package orgsync

import (
	"context"
	"fmt"
	"time"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/orgs"
)

// NewHire is a user an administrator creates in a source org and puts in a
// team (the demo's and the sync set tests' joiner).
type NewHire struct {
	Name, Email, Title, Department string
	// Division is a division name (empty: the home division).
	Division string
	// License is a license id assigned to the hire (empty: none).
	License string
	// Skills are skill names with their proficiency.
	Skills map[string]float64
	// Phone is the hire's work number (empty: none).
	Phone string
}

// HireIntoTeam does through the Genesys API of org source what an
// administrator does for a new hire: create the user, license them, give
// them skills, and last put them in team (so the user joins a sync set
// selecting the team complete). It returns the new user's id and when the
// team membership was made.
func (d *Dev) HireIntoTeam(ctx context.Context, source, team string, hire NewHire) (string, time.Time, error) {
	c, err := orgs.NewRegistry(d.Orgs.OrgConfigs()).Client(source)
	if err != nil {
		return "", time.Time{}, err
	}
	t, ok, err := c.FindTeamByName(ctx, team)
	if err != nil || !ok {
		return "", time.Time{}, fmt.Errorf("hire %s: team %q in %s: found %v: %v", hire.Email, team, source, ok, err)
	}
	divs, err := c.ListDivisions(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("hire %s: %w", hire.Email, err)
	}
	divID := ""
	for _, dv := range divs {
		if hire.Division == dv.Name || hire.Division == "" && dv.HomeDivision {
			divID = dv.ID
		}
	}
	if divID == "" {
		return "", time.Time{}, fmt.Errorf("hire %s: no division %q in %s", hire.Email, hire.Division, source)
	}
	in := genesys.CreateUser{Name: hire.Name, Email: hire.Email, DivisionID: divID, Title: hire.Title, Department: hire.Department}
	if hire.Phone != "" {
		in.Addresses = []genesys.Contact{{Address: hire.Phone, MediaType: "PHONE", Type: "WORK"}}
	}
	u, err := c.CreateUser(ctx, in)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("hire %s: %w", hire.Email, err)
	}
	if hire.License != "" {
		if _, err := c.AssignLicenses(ctx, []genesys.LicenseAssignment{{LicenseID: hire.License, UserIDsAdd: []string{u.ID}, UserIDsRemove: []string{}}}); err != nil {
			return "", time.Time{}, fmt.Errorf("hire %s: %w", hire.Email, err)
		}
	}
	var skills []genesys.SkillProficiency
	for name, p := range hire.Skills {
		s, ok, err := c.FindSkillByName(ctx, name)
		if err != nil || !ok {
			return "", time.Time{}, fmt.Errorf("hire %s: skill %q: found %v: %v", hire.Email, name, ok, err)
		}
		skills = append(skills, genesys.SkillProficiency{ID: s.ID, Proficiency: p})
	}
	if len(skills) > 0 {
		if err := c.ReplaceUserRoutingSkills(ctx, u.ID, skills); err != nil {
			return "", time.Time{}, fmt.Errorf("hire %s: %w", hire.Email, err)
		}
	}
	at := time.Now()
	if _, err := c.AddTeamMembers(ctx, t.ID, []string{u.ID}); err != nil {
		return "", time.Time{}, fmt.Errorf("hire %s: add to team %q: %w", hire.Email, team, err)
	}
	return u.ID, at, nil
}

// MoveOutOfTeam removes the user email from team in org source through the
// Genesys API, as an administrator does when someone leaves the team.
func (d *Dev) MoveOutOfTeam(ctx context.Context, source, team, email string) error {
	c, err := orgs.NewRegistry(d.Orgs.OrgConfigs()).Client(source)
	if err != nil {
		return err
	}
	t, ok, err := c.FindTeamByName(ctx, team)
	if err != nil || !ok {
		return fmt.Errorf("remove %s: team %q in %s: found %v: %v", email, team, source, ok, err)
	}
	u, ok, err := c.FindUserByEmail(ctx, email)
	if err != nil || !ok {
		return fmt.Errorf("remove %s from team %q: user found %v: %v", email, team, ok, err)
	}
	if err := c.RemoveTeamMembers(ctx, t.ID, []string{u.ID}); err != nil {
		return fmt.Errorf("remove %s from team %q: %w", email, team, err)
	}
	return nil
}
