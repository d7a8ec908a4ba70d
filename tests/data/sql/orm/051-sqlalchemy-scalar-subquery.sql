SELECT users.name, (SELECT count(addresses.id) AS count_1 
FROM addresses 
WHERE users.id = addresses.user_id) AS anon_1 
FROM users ORDER BY users.id