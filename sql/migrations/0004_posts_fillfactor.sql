-- 0004: leave room in the posts table's pages for the daily updates of recent posts.
-- Every run rewrites the counts of the posts inside the engagement window, and those posts sit
-- together on the newest pages. With free space on a page, PostgreSQL updates a row in place
-- (a HOT update: no new entry in any of the table's three indexes) and prunes yesterday's
-- version the next time it reads the page; with full pages (the default, 100) every update
-- writes a new index entry in each index. Only new pages are affected; nothing the website
-- reads changes. Measured by `make bench` (posts merge).
ALTER TABLE posts SET (fillfactor = 70);
