-- The guestbook starts empty: its page tells the owner how to invite visitors.
return {}
