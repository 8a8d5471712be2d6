-- Three cards that show how the board works.
return {
  cards = {
    { title = "Invite your team", notes = "Members join from your site; give them the member role on the Groups page.", lane = "todo", position = 1 },
    { title = "Drag cards between lanes", notes = "Or use the arrows on each card.", lane = "doing", position = 1 },
    { title = "Apply the Kanban template", lane = "done", position = 1 },
  },
}
